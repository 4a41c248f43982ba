"""ament_flake8 over the package (ROS 2 machines only; `colcon test` runs it)."""

import pytest

main_with_errors = pytest.importorskip(
    'ament_flake8.main', reason='ament_flake8 is not installed: a ROS 2 linter, run by '
    '`colcon test` on a machine with ROS 2 sourced').main_with_errors


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=[])
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
