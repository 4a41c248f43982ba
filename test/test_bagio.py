"""Unit tests of depth_node.bagio: topic discovery, ROS 1 -> ROS 2, stamp peeking, writer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')

from depth_node import bagio  # noqa: E402, I100

IMG, CMP, INFO = bagio.IMAGE, bagio.COMPRESSED, bagio.CAMERA_INFO


def test_discovery_sibling_naming_prefers_raw_and_skips_depth():
    topics = {'/camera/color/image_raw': IMG, '/camera/color/image_raw/compressed': CMP,
              '/camera/color/camera_info': INFO,
              '/front/image_rect_color/compressed': CMP, '/front/camera_info': INFO,
              '/camera/depth/image_rect_raw': IMG, '/camera/depth/camera_info': INFO,
              '/camera/color/depth/image': IMG, '/fisheye1/image_raw': IMG,
              '/other/points': 'sensor_msgs/msg/PointCloud2'}
    cameras, lonely = bagio.discover_cameras(topics)
    assert [(c.image_topic, c.camera_info_topic, c.namespace) for c in cameras] == [
        ('/camera/color/image_raw', '/camera/color/camera_info', '/camera/color'),
        ('/front/image_rect_color/compressed', '/front/camera_info', '/front')]
    assert cameras[1].compressed and not cameras[0].compressed
    assert cameras[1].output_topic('depth/image') == '/front/depth/image'
    assert lonely == ['/fisheye1/image_raw']
    listing = bagio.describe_topics(topics, {'/camera/color/image_raw': 7})
    assert '/camera/color/image_raw [Image, 7 msgs] + /camera/color/camera_info' in listing
    assert '/camera/depth/image_rect_raw' in listing.split('other image topics')[1]


def test_namespace_of_top_level_topics():
    assert bagio.camera_namespace('/image_raw') == '/'
    assert bagio.sibling_camera_info('/image_raw') == '/camera_info'
    assert bagio.CameraTopicNames('/image_raw', IMG, None, '/').output_topic('points') == '/points'


def test_ros1_messages_become_ros2(humble_factory):
    from rosbags.typesys import get_typestore, Stores
    ros1 = get_typestore(Stores.ROS1_NOETIC)
    T = ros1.types
    header = T['std_msgs/msg/Header'](seq=7, stamp=T['builtin_interfaces/msg/Time'](
        sec=12, nanosec=345), frame_id='cam')
    K = np.array([500.0, 0, 320, 0, 501, 240, 0, 0, 1])
    P = np.array([500.0, 0, 320, 0, 0, 501, 240, 0, 0, 0, 1, 0])
    info1 = T['sensor_msgs/msg/CameraInfo'](
        header=header, height=480, width=640, distortion_model='plumb_bob',
        D=np.array([0.1, -0.2, 0.0, 0.0, 0.01]), K=K, R=np.eye(3).reshape(-1), P=P,
        binning_x=1, binning_y=2, roi=T['sensor_msgs/msg/RegionOfInterest'](
            x_offset=1, y_offset=2, height=3, width=4, do_rectify=True))
    raw1 = ros1.serialize_ros1(info1, 'sensor_msgs/msg/CameraInfo')
    assert bagio.peek_stamp_ns(raw1, is_ros2=False) == 12 * 10**9 + 345
    info2 = bagio.to_ros2(ros1.deserialize_ros1(raw1, 'sensor_msgs/msg/CameraInfo'),
                          INFO, humble_factory)
    store = humble_factory.typestore
    raw2 = store.serialize_cdr(info2, INFO)
    assert bagio.peek_stamp_ns(raw2, is_ros2=True) == 12 * 10**9 + 345
    back = store.deserialize_cdr(raw2, INFO)
    np.testing.assert_array_equal(back.k, K)
    np.testing.assert_array_equal(back.p, P)
    np.testing.assert_array_equal(back.d, [0.1, -0.2, 0.0, 0.0, 0.01])
    assert (back.binning_y, back.roi.width, back.roi.do_rectify) == (2, 4, True)
    assert back.header.frame_id == 'cam' and not hasattr(back.header, 'seq')
    image1 = T['sensor_msgs/msg/Image'](header=header, height=2, width=3, encoding='mono8',
                                        is_bigendian=0, step=3,
                                        data=np.arange(6, dtype=np.uint8))
    image2 = bagio.to_ros2(image1, IMG, humble_factory)
    back = store.deserialize_cdr(store.serialize_cdr(image2, IMG), IMG)
    np.testing.assert_array_equal(back.data, np.arange(6))
    assert (back.encoding, back.step, back.header.stamp.nanosec) == ('mono8', 3, 345)


def test_peek_stamp_big_endian_and_short(humble_factory):
    store = humble_factory.typestore
    msg = humble_factory.CompressedImage(header=humble_factory.header(5, 6, 'x'), format='png',
                                         data=np.zeros(3, np.uint8))
    raw = store.serialize_cdr(msg, CMP, little_endian=False)
    assert bagio.peek_stamp_ns(raw, is_ros2=True) == 5 * 10**9 + 6
    assert bagio.peek_stamp_ns(b'\x00\x01', is_ros2=True) is None


@pytest.mark.parametrize('threaded', [True, False])
def test_writer_registers_types_and_qos(tmp_path, humble_factory, threaded):
    from rosbags.highlevel import AnyReader
    store = humble_factory.typestore
    path = tmp_path / 'bag'
    msg = humble_factory.CompressedImage(header=humble_factory.header(1, 2, 'f'), format='png',
                                         data=np.arange(10, dtype=np.uint8))
    with bagio.BagWriter(path, store, custom_data={'k': 'v'}, threaded=threaded) as writer:
        for i in range(30):
            writer.write('/a/b', msg, 100 + i)
    assert writer.counts == {'/a/b': 30}
    meta = (path / 'metadata.yaml').read_text()
    assert 'version: 8' in meta and 'reliability: 1' in meta and 'k: v' in meta
    with AnyReader([path]) as reader:
        (conn,) = reader.connections
        assert conn.msgtype == CMP and 'std_msgs/Header' in conn.msgdef.data
        qos = conn.ext.offered_qos_profiles[0]
        assert qos.reliability.name == 'RELIABLE' and qos.durability.name == 'VOLATILE'
        times = [t for _, t, _ in reader.messages()]
    assert times == list(range(100, 130))
    with pytest.raises(Exception, match='exists already'):
        bagio.BagWriter(path, store)


def test_progress_bar_on_a_terminal_only(monkeypatch):
    import io

    from depth_node import bag

    class Tty(io.StringIO):

        def isatty(self):
            return True

    for stream, quiet, shown in ((Tty(), False, True), (Tty(), True, False),
                                 (io.StringIO(), False, False)):
        monkeypatch.setattr('sys.stderr', stream)
        bar = bag.progress_bar(4, quiet)
        bar.update(4)
        bar.close()
        text = stream.getvalue()
        assert ('4/4' in text and 'frame/s' in text) == shown, text
