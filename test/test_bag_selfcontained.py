"""Issue 10 point 6: the output bag plays back alone.

With ``--camera-info FILE`` the calibration used is written as ``<ns>/camera_info``; a
relative-only run writes ``<ns>/depth/camera_info`` beside ``depth/relative``; and
``--copy-other-topics`` copies every topic the run does not read (IMU, odometry, the other
camera), converted to ROS 2 for a ROS 1 input, byte for byte like ``rosbags-convert``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_bag_support import check_cdr, decode, read_bag, stamp_ns

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')

from depth_node.cli import main  # noqa: E402, I100

OTHERS = ('/camera/accel/sample', '/camera/gyro/sample', '/camera/odom/sample',
          '/camera/fisheye2/image_raw')


@pytest.fixture(scope='module')
def store():
    from depth_node.messages import rosbags_factory
    return rosbags_factory('humble').typestore


def _t265(shared_data, kind: str) -> Path:
    return shared_data / 'bags' / ('t265_trimmed_locoffice.bag' if kind == 'ros1'
                                   else 't265_trimmed_locoffice_ros2')


@pytest.mark.parametrize('kind', ['ros1', 'ros2'])
def test_calibration_file_and_other_topics_make_a_bag_that_plays_alone(
        shared_data, model, store, tmp_path, kind):
    import yaml
    calib = shared_data / 'calibration' / 't265_fisheye1_equidistant.yaml'
    out = tmp_path / 'out'
    assert main(['bag', str(_t265(shared_data, kind)), str(out), '--model', str(model),
                 '--quiet', '--image-topic', '/camera/fisheye1/image_raw', '--camera-info',
                 str(calib), '--copy-input', '--copy-other-topics']) == 0
    rows = read_bag(out)
    check_cdr(store, rows)
    msgs = decode(store, rows)
    by_topic: dict[str, list] = {}
    for topic, _, msg in msgs:
        by_topic.setdefault(topic, []).append(msg)
    images = by_topic['/camera/fisheye1/image_raw']
    k = yaml.safe_load(calib.read_text())['camera_matrix']['data']
    for name in ('/camera/fisheye1/camera_info', '/camera/fisheye1/depth/camera_info'):
        infos = by_topic[name]      # one per frame, stamped as the image, the file's K
        assert [stamp_ns(m) for m in infos] == [stamp_ns(m) for m in images]
        for info in infos:
            assert info.distortion_model == 'equidistant'
            np.testing.assert_allclose(info.k, k)
            assert (info.width, info.height) == (848, 800)
    assert len(by_topic['/camera/fisheye1/depth/relative']) == len(images) == 3
    # every other topic, as the ROS 2 recording holds it (ROS 1: converted like rosbags)
    reference = read_bag(_t265(shared_data, 'ros2'))
    for topic in OTHERS:
        assert [r[2:] for r in rows if r[0] == topic] == \
            [r[2:] for r in reference if r[0] == topic], topic


def test_without_copy_other_topics_nothing_else_is_copied(shared_data, model, tmp_path):
    calib = shared_data / 'calibration' / 't265_fisheye1_equidistant.yaml'
    out = tmp_path / 'out'
    assert main(['bag', str(_t265(shared_data, 'ros2')), str(out), '--model', str(model),
                 '--quiet', '--image-topic', '/camera/fisheye1/image_raw', '--camera-info',
                 str(calib)]) == 0
    assert {r[0] for r in read_bag(out)} == {
        '/camera/fisheye1/camera_info', '/camera/fisheye1/depth/camera_info',
        '/camera/fisheye1/depth/relative'}
