"""ament_xmllint: package.xml against the package format 3 schema (ROS 2 machines only)."""

import pytest

main = pytest.importorskip(
    'ament_xmllint.main', reason='ament_xmllint is not installed: a ROS 2 linter, run by '
    '`colcon test` on a machine with ROS 2 sourced').main


@pytest.mark.linter
@pytest.mark.xmllint
def test_xmllint():
    rc = main(argv=[])
    assert rc == 0, 'Found errors'
