"""ament_pep257 over the package (ROS 2 machines only; `colcon test` runs it).

ament's default ignores plus the docstring rules this project's ruff.toml also leaves out
(D213, D406, D407, D413, D415), so both linters enforce the same style: the summary of a
multi-line docstring is on its first line (ruff enforces D212), and D205, D400 and D401 are
checked, as ament_flake8 (flake8-docstrings, pep257 convention) checks them anyway.
"""

import pytest

main = pytest.importorskip(
    'ament_pep257.main', reason='ament_pep257 is not installed: a ROS 2 linter, run by '
    '`colcon test` on a machine with ROS 2 sourced').main

IGNORE = ['D100', 'D101', 'D102', 'D103', 'D104', 'D105', 'D106', 'D107', 'D203', 'D212',
          'D404', 'D213', 'D406', 'D407', 'D413', 'D415']


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    rc = main(argv=['.', 'test', '--ignore', *IGNORE])
    assert rc == 0, 'Found code style errors / warnings'
