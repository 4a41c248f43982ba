"""ament_copyright is deliberately not enforced for this package.

ament_copyright requires a copyright and licence header at the top of every source file. This
package declares its licence once (Apache-2.0, in package.xml and setup.py) and keeps its
files free of per-file headers, so the check is skipped, with that reason, wherever it would
run (ros2 pkg create templates skip it the same way until headers are added). To enforce it,
add the Apache-2.0 header to every file and delete the skip below.
"""

import pytest


@pytest.mark.skip(reason='No per-file copyright headers: the package licence (Apache-2.0) is '
                         'declared in package.xml; see this file for how to enforce it.')
def test_copyright():
    from ament_copyright.main import main
    rc = main(argv=['.', 'test'])
    assert rc == 0, 'Found errors'
