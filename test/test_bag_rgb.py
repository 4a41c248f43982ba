"""depth-node bag --depth-topic with xyzrgb clouds: the registered colour image paired by stamp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_bag_support import camera_info, check_cdr, decode, image, read_bag, stamp_ns, write_bag

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')

from depth_node import bag, bag_rosbag  # noqa: E402, I100
from depth_node.cli import main  # noqa: E402

S = 1_000_000_000
W, H = 64, 48
TUM_DEPTH = '/camera/depth_registered/image_gt'
TUM_INFO = '/camera/color/camera_info'


def _cloud(msg):
    """(xyz (H, W, 3) float32, rgb (H, W, 3) uint8 or None) of a PointCloud2."""
    from depth_node.clouds import pointcloud2_to_array
    cloud = pointcloud2_to_array(msg)
    xyz = np.stack([cloud['x'], cloud['y'], cloud['z']], axis=-1)
    if 'rgb' not in cloud.dtype.names:
        return xyz, None
    packed = np.ascontiguousarray(cloud['rgb']).view(np.uint32)
    rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255],
                   axis=-1).astype(np.uint8)
    return xyz, rgb


def _points(store, out: Path) -> dict[int, object]:
    """Point clouds of an output bag by stamp."""
    return {stamp_ns(m): m for topic, _, m in decode(store, read_bag(out))
            if topic.endswith('/points')}


def _pixels(msg) -> np.ndarray:
    """RGB pixels of a raw rgb8/bgr8 Image, read straight from its bytes."""
    assert msg.encoding in ('rgb8', 'bgr8') and msg.step == msg.width * 3
    pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    return pixels if msg.encoding == 'rgb8' else pixels[:, :, ::-1]


# -- the real TUM RGB-D bag: registered depth + colour at the same stamp -----------------------
def _tum_run(src: Path, out: Path, *extra: str, summary: Path | None = None) -> int:
    args = ['bag', str(src), str(out), '--depth-topic', TUM_DEPTH, '--camera-info-topic',
            TUM_INFO, '--quiet', *extra]
    if summary is not None:
        args += ['--json-summary', str(summary)]
    return main(args)


@pytest.mark.parametrize('rgb_args', [[], ['--rgb-topic', '/camera/color/image_raw'],
                                      ['--rgb-topic', '/camera/color/image_raw/compressed']],
                         ids=['discovered', 'raw', 'compressed'])
def test_tum_xyzrgb_colours_equal_the_image(shared_data, humble_factory, tmp_path, capsys,
                                            rgb_args):
    from depth_node.images import message_to_rgb
    store = humble_factory.typestore
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    assert _tum_run(src, tmp_path / 'xyz') == 0
    summary_file = tmp_path / 's.json'
    assert _tum_run(src, tmp_path / 'rgb', '--point-cloud-fields', 'xyzrgb', *rgb_args,
                    summary=summary_file) == 0
    err = capsys.readouterr().err
    if not rgb_args:
        assert 'with /camera/color/image_raw, the only colour camera' in err
    rgb_topic = rgb_args[1] if rgb_args else '/camera/color/image_raw'
    summary = json.loads(summary_file.read_text())
    assert summary['cameras'][0]['rgb_topic'] == rgb_topic
    assert summary['frames_written'] == 1 and summary['skipped'] == {}
    rows = read_bag(tmp_path / 'rgb')
    check_cdr(store, rows)
    inputs = {topic: m for topic, _, m in decode(store, read_bag(src))}
    ref_xyz, ref_rgb = _cloud(next(iter(_points(store, tmp_path / 'xyz').values())))
    assert ref_rgb is None
    clouds = _points(store, tmp_path / 'rgb')
    assert list(clouds) == [stamp_ns(inputs[TUM_DEPTH])]
    cloud = clouds[stamp_ns(inputs[TUM_DEPTH])]
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb']
    assert (cloud.width, cloud.height, cloud.point_step) == (640, 480, 16)
    xyz, rgb = _cloud(cloud)
    np.testing.assert_array_equal(xyz, ref_xyz)          # colouring leaves xyz untouched
    valid = np.isfinite(xyz).all(axis=-1)
    assert valid.sum() > 100_000
    src_msg = inputs[rgb_topic]
    expected = _pixels(src_msg) if rgb_topic.endswith('image_raw') else \
        message_to_rgb(src_msg)
    np.testing.assert_array_equal(rgb[valid], expected[valid])
    if rgb_topic.endswith('compressed'):   # JPEG: close to the raw image, not equal
        raw = _pixels(inputs['/camera/color/image_raw']).astype(np.int16)
        assert np.abs(rgb[valid].astype(np.int16) - raw[valid]).mean() < 8


def test_tum_rgb_topic_needs_xyzrgb(shared_data, humble_factory, tmp_path, capsys):
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    assert _tum_run(src, tmp_path / 'o', '--rgb-topic', '/camera/color/image_raw') == 0
    assert '--rgb-topic /camera/color/image_raw is not read' in capsys.readouterr().err
    cloud = next(iter(_points(humble_factory.typestore, tmp_path / 'o').values()))
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z']


@pytest.mark.parametrize('args, message', [
    (['--rgb-topic', '/nope'], "--rgb-topic '/nope' is not in the bag"),
    (['--rgb-topic', TUM_INFO], 'carries sensor_msgs/msg/CameraInfo'),
    (['--rgb-topic', TUM_DEPTH], 'is the depth topic itself'),
])
def test_tum_bad_rgb_topic_is_a_usage_error(shared_data, tmp_path, capsys, args, message):
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    assert _tum_run(src, tmp_path / 'o', '--point-cloud-fields', 'xyzrgb', *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


def test_rgb_topic_without_depth_topic_is_a_usage_error(shared_data, tmp_path, capsys):
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    assert main(['bag', str(src), str(tmp_path / 'o'), '--model', 'm.onnx', '--rgb-topic',
                 '/camera/color/image_raw']) == 2
    assert 'no --depth-topic was given' in capsys.readouterr().err


# -- generated bags: pairing rules --------------------------------------------------------------
def _depth(f, stamp: int, frame: str, i: int):
    """Return a 16UC1 depth image (a tilted plane 1-2 m, different per frame)."""
    mm = (1000 + 10 * i + np.linspace(0, 1000, W)[None, :] + np.zeros((H, 1))).astype(np.uint16)
    return f.Image(header=f.header(stamp // S, stamp % S, frame), height=H, width=W,
                   encoding='16UC1', is_bigendian=0, step=W * 2,
                   data=f.byte_array(mm.reshape(-1).view(np.uint8)))


def _colours(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def _infos(f, stamps) -> list:
    """Return a camera_info row per depth stamp (paired by the default, exact, rule)."""
    return [('/cam/depth/camera_info', t * S - 1, camera_info(f, t * S, W, H, 'cam'))
            for t in stamps]


def _pairing_bag(f, path: Path, extra_camera: bool = False) -> tuple[Path, list[np.ndarray]]:
    """Write depth + colour frames 1..7 with every pairing case.

    Frame 3 has no colour image, 4 one of another size, 2 and 6 get theirs logged after the
    depth frame (6 after frame 7's too).
    """
    rgbs = _colours(8)
    rows = _infos(f, range(1, 8))

    def depth(t, log):
        rows.append(('/cam/depth/image_raw', log, _depth(f, t * S, 'cam', t)))

    def colour(t, log, rgb=None):
        rows.append(('/cam/color/image_raw', log,
                     image(f, t * S, rgbs[t] if rgb is None else rgb, 'cam')))

    colour(1, 1 * S), depth(1, 1 * S + 10)
    depth(2, 2 * S), colour(2, 2 * S + 10)                       # colour logged after
    depth(3, 3 * S)                                              # no colour image
    colour(4, 4 * S, rgbs[4][:H // 2, :W // 2]), depth(4, 4 * S + 10)   # another size
    colour(5, 5 * S), depth(5, 5 * S + 10)
    depth(6, 6 * S)                                              # colour after frame 7's
    colour(7, 7 * S), depth(7, 7 * S + 10)
    colour(6, 7 * S + 20)
    if extra_camera:
        rows.append(('/cam2/image_raw', 8 * S, image(f, 7 * S, rgbs[7], 'cam2')))
    rows.sort(key=lambda r: r[1])
    return write_bag(path, f.typestore, rows), rgbs


def _run(src: Path, out: Path, summary: Path, *extra: str) -> int:
    return main(['bag', str(src), str(out), '--depth-topic', '/cam/depth/image_raw', '--quiet',
                 '--json-summary', str(summary), *extra])


@pytest.mark.parametrize('explicit', [False, True])
def test_pairing_by_exact_stamp_with_a_missing_colour_image(humble_factory, tmp_path, capsys,
                                                            explicit):
    src, rgbs = _pairing_bag(humble_factory, tmp_path / 'in')
    extra = ['--rgb-topic', '/cam/color/image_raw'] if explicit else []
    summary_file = tmp_path / 's.json'
    assert _run(src, tmp_path / 'out', summary_file, '--point-cloud-fields', 'xyzrgb',
                *extra) == bag.EXIT_SKIPPED
    err = capsys.readouterr().err
    assert '[no_rgb_for_depth] /cam/depth/image_raw: no colour image on /cam/color/image_raw ' \
        'for the stamp 3.000000000 s (exact sync)' in err
    summary = json.loads(summary_file.read_text())
    assert summary['skipped'] == {'no_rgb_for_depth': 1, 'size_mismatch': 1}
    assert summary['frames_read'] == 7 and summary['frames_written'] == 5
    rows = read_bag(tmp_path / 'out')
    check_cdr(humble_factory.typestore, rows)
    clouds = _points(humble_factory.typestore, tmp_path / 'out')
    assert sorted(clouds) == [t * S for t in (1, 2, 5, 6, 7)]
    # frame 6 waited for its colour image and frame 7 behind it (else frame 6 would have been
    # skipped as out_of_order_stamp); each cloud has its depth image's log time
    assert [t for topic, _, t, _ in rows if topic == '/cam/depth/points'] == \
        [t * S + (0 if t in (2, 6) else 10) for t in (1, 2, 5, 6, 7)]
    assert _run(src, tmp_path / 'xyz', tmp_path / 'x.json') == 0
    ref = _points(humble_factory.typestore, tmp_path / 'xyz')
    for stamp, cloud in clouds.items():
        xyz, rgb = _cloud(cloud)
        np.testing.assert_array_equal(xyz, _cloud(ref[stamp])[0])
        valid = np.isfinite(xyz).all(axis=-1)
        assert valid.mean() > 0.9
        np.testing.assert_array_equal(rgb[valid], rgbs[stamp // S][valid])


def test_several_colour_cameras_warn_and_write_xyz(humble_factory, tmp_path, capsys):
    src, _ = _pairing_bag(humble_factory, tmp_path / 'in', extra_camera=True)
    assert _run(src, tmp_path / 'out', tmp_path / 's.json', '--point-cloud-fields',
                'xyzrgb') == 0
    err = capsys.readouterr().err
    assert 'several colour cameras (/cam/color/image_raw, /cam2/image_raw)' in err
    assert '--rgb-topic' in err
    clouds = _points(humble_factory.typestore, tmp_path / 'out')
    assert len(clouds) == 7
    assert all([f.name for f in c.fields] == ['x', 'y', 'z'] for c in clouds.values())
    # the explicit choice colours them
    assert _run(src, tmp_path / 'out2', tmp_path / 's2.json', '--point-cloud-fields', 'xyzrgb',
                '--rgb-topic', '/cam2/image_raw') == bag.EXIT_SKIPPED
    summary = json.loads((tmp_path / 's2.json').read_text())
    assert summary['skipped'] == {'no_rgb_for_depth': 6}
    assert sorted(_points(humble_factory.typestore, tmp_path / 'out2')) == [7 * S]


def test_waiting_frames_are_bounded(humble_factory, tmp_path, monkeypatch):
    """Colour images logged far after their depth frames: the oldest frames stop waiting."""
    monkeypatch.setattr(bag_rosbag, 'MAX_BUFFERED', 2)
    rgbs = _colours(6)
    f = humble_factory
    rows = _infos(f, range(1, 6))
    rows += [('/cam/depth/image_raw', t * S, _depth(f, t * S, 'cam', t)) for t in range(1, 6)]
    rows += [('/cam/color/image_raw', 10 * S + t, image(f, t * S, rgbs[t], 'cam'))
             for t in range(1, 6)]
    src = write_bag(tmp_path / 'in', f.typestore, rows)
    summary_file = tmp_path / 's.json'
    assert _run(src, tmp_path / 'out', summary_file, '--point-cloud-fields',
                'xyzrgb') == bag.EXIT_SKIPPED
    summary = json.loads(summary_file.read_text())
    assert summary['skipped'] == {'no_rgb_for_depth': 3}
    clouds = _points(f.typestore, tmp_path / 'out')
    assert sorted(clouds) == [4 * S, 5 * S]
    for stamp, cloud in clouds.items():
        xyz, rgb = _cloud(cloud)
        valid = np.isfinite(xyz).all(axis=-1)
        np.testing.assert_array_equal(rgb[valid], rgbs[stamp // S][valid])
