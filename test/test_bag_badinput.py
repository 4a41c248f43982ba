"""depth-node bag on bad input: every bad frame skipped and counted, every good frame kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bag_support import (
    camera_info,
    check_cdr,
    decode,
    image,
    jpeg,
    read_bag,
    stamp_ns,
    tum_rgb_small,
    write_bag,
)

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')

from depth_node import bag  # noqa: E402, I100
from depth_node.cli import main  # noqa: E402

S = 1_000_000_000
W, H = 64, 48
FIXED = ['--scale-source', 'fixed', '--fixed-scale', '1.0', '--fixed-shift', '0.5',
         '--sync-policy', 'latest_before']   # frame 8 has only an earlier camera_info


def _frames(f):
    """(rows of the mixed bag, rows of the good-only bag, expected skip counts)."""
    rgb = tum_rgb_small(W, H)
    rgbs = [np.roll(rgb, 3 * i, axis=1) for i in range(13)]  # distinct frames
    good: list = []
    bad: list = []

    def a(t, msg, is_good):
        (good if is_good else bad).append(('/cam_a/image_raw', t * S + 1000, msg))
        if not is_good:
            return
        good.append(('/cam_a/camera_info', t * S + 500, camera_info(f, t * S, W, H, 'cam_a')))

    # camera A, raw rgb8
    bad.append(('/cam_a/image_raw', 1 * S + 1000, image(f, 1 * S, rgbs[1], 'cam_a')))  # no info
    a(2, image(f, 2 * S, rgbs[2], 'cam_a'), True)
    bad.append(('/cam_a/camera_info', 3 * S + 500, camera_info(f, 3 * S, W, H, 'cam_a')))
    a(3, image(f, 3 * S, rgbs[3], 'cam_a', truncate=100), False)                  # truncated
    a(4, image(f, 4 * S, rgbs[4], 'cam_a'), True)
    bad.append(('/cam_a/camera_info', 5 * S + 500, camera_info(f, 5 * S, W, H, 'cam_a')))
    a(5, image(f, 5 * S, rgbs[5], 'cam_a', encoding='weird8'), False)            # encoding
    # good frame whose exact-stamp camera_info is logged after it
    good.append(('/cam_a/image_raw', 6 * S + 1000, image(f, 6 * S, rgbs[6], 'cam_a')))
    good.append(('/cam_a/camera_info', 6 * S + 2000, camera_info(f, 6 * S, W, H, 'cam_a')))
    bad.append(('/cam_a/camera_info', 7 * S + 500,
                camera_info(f, 7 * S, W, H, 'cam_a', k=np.zeros(9))))             # uncalibrated
    a(7, image(f, 7 * S, rgbs[7], 'cam_a'), False)
    # good frame paired with the latest camera_info stamped before it (no exact one)
    good.append(('/cam_a/camera_info', 7 * S + S // 2,
                 camera_info(f, 7 * S + S // 2, W, H, 'cam_a')))
    good.append(('/cam_a/image_raw', 8 * S + 1000, image(f, 8 * S, rgbs[8], 'cam_a')))
    bad.append(('/cam_a/camera_info', 9 * S + 500, camera_info(f, 9 * S, 100, 100, 'cam_a')))
    a(9, image(f, 9 * S, rgbs[9], 'cam_a'), False)                                # size
    a(10, image(f, 10 * S, rgbs[10], 'cam_a'), True)
    bad.append(('/cam_a/camera_info', 4 * S + 600, camera_info(f, 4 * S + 10, W, H, 'cam_a')))
    bad.append(('/cam_a/image_raw', 10 * S + 5000,
                image(f, 4 * S + 10, rgbs[11], 'cam_a')))                          # stamp back
    a(11, image(f, 11 * S, rgbs[11], 'cam_a'), True)
    truncated_cdr = bytes(f.typestore.serialize_cdr(image(f, 12 * S, rgbs[12], 'cam_a'),
                                                    'sensor_msgs/msg/Image'))[:40]
    bad.append(('/cam_a/image_raw', 12 * S + 1000,
                ('sensor_msgs/msg/Image', truncated_cdr)))                        # corrupt CDR
    # camera B, compressed
    for t in (2, 4, 6):
        good.append(('/cam_b/camera_info', t * S + 700, camera_info(f, t * S, W, H, 'cam_b')))
        good.append(('/cam_b/image_raw/compressed', t * S + 1200,
                     jpeg(f, t * S, rgbs[t][::-1].copy(), 'cam_b')))
    bad.append(('/cam_b/camera_info', 3 * S + 700, camera_info(f, 3 * S, W, H, 'cam_b')))
    bad.append(('/cam_b/image_raw/compressed', 3 * S + 1200,
                jpeg(f, 3 * S, None, 'cam_b', payload=b'\xff\xd8\xff\x00broken!')))
    mixed = sorted(good + bad, key=lambda r: r[1])
    good = sorted(good, key=lambda r: r[1])
    expected = {'no_camera_info': 1, 'bad_image': 1, 'unsupported_encoding': 1,
                'uncalibrated_camera': 1, 'size_mismatch': 1, 'out_of_order_stamp': 1,
                'undeserializable': 1, 'undecodable_compressed': 1}
    return mixed, good, expected


@pytest.fixture(scope='module')
def bags(tmp_path_factory, humble_factory):
    root = tmp_path_factory.mktemp('bags')
    mixed, good, expected = _frames(humble_factory)
    return (write_bag(root / 'mixed', humble_factory.typestore, mixed),
            write_bag(root / 'good', humble_factory.typestore, good, storage='sqlite3'), expected)


def test_bad_frames_skipped_counted_and_good_frames_identical(bags, model, tmp_path,
                                                              humble_factory):
    mixed, good, expected = bags
    summary_file = tmp_path / 'summary.json'
    out_mixed, out_good = tmp_path / 'out_mixed', tmp_path / 'out_good'
    status = main(['bag', str(mixed), str(out_mixed), '--model', str(model), '--quiet',
                   '--json-summary', str(summary_file), *FIXED])
    assert status == bag.EXIT_SKIPPED
    summary = json.loads(summary_file.read_text())
    assert summary['skipped'] == expected
    assert summary['frames_read'] == 13 + 4
    assert summary['frames_written'] == 6 + 3
    assert summary['exit_status'] == 3

    assert main(['bag', str(good), str(out_good), '--model', str(model), '--quiet',
                 *FIXED]) == bag.EXIT_OK
    rows_mixed, rows_good = read_bag(out_mixed), read_bag(out_good)
    assert rows_mixed == rows_good                       # bit-identical, same order
    check_cdr(humble_factory.typestore, rows_mixed)
    msgs = decode(humble_factory.typestore, rows_mixed)
    stamps = {ns: [stamp_ns(m) // S for topic, _, m in msgs if topic == f'/{ns}/depth/image']
              for ns in ('cam_a', 'cam_b')}
    assert stamps == {'cam_a': [2, 4, 6, 8, 10, 11], 'cam_b': [2, 4, 6]}
    topics = {topic for topic, _, _ in msgs}
    assert topics == {f'/{ns}/{s}' for ns in ('cam_a', 'cam_b')
                      for s in ('depth/image', 'depth/camera_info', 'points')}
    for topic, log_time, msg in msgs:                    # log time = input image log time
        offset = 1000 if topic.startswith('/cam_a') else 1200
        assert log_time == stamp_ns(msg) + offset
        assert msg.header.frame_id == topic.split('/')[1]


@pytest.mark.parametrize('signame,status', [('SIGINT', bag.EXIT_INTERRUPTED),
                                            ('SIGTERM', bag.EXIT_TERMINATED),
                                            ('SIGHUP', bag.EXIT_HANGUP)])
def test_interrupt_closes_a_valid_bag(bags, model, tmp_path, monkeypatch, humble_factory, capsys,
                                      signame, status):
    """Ctrl-C, SIGTERM (timeout, kill, docker stop) and SIGHUP all leave a valid bag."""
    import os
    import signal
    _, good, _ = bags
    real_build = bag.build_pipeline
    calls = []

    class Interrupting:

        def __init__(self, inner):
            self.inner = inner
            self.model = inner.model

        def process(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 4:
                os.kill(os.getpid(), getattr(signal, signame))
            return self.inner.process(*args, **kwargs)

        def outputs(self, *args, **kwargs):
            return self.inner.outputs(*args, **kwargs)

    monkeypatch.setattr(bag, 'build_pipeline', lambda options: Interrupting(real_build(options)))
    out = tmp_path / 'out'
    summary_file = tmp_path / 's.json'
    assert main(['bag', str(good), str(out), '--model', str(model), '--quiet', *FIXED,
                 '--json-summary', str(summary_file)]) == status
    summary = json.loads(summary_file.read_text())
    assert summary['interrupted'] is True and summary['signal'] == signame
    assert summary['exit_status'] == status
    assert f'(INTERRUPTED by {signame})' in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # handlers restored
    rows = read_bag(out)                                 # the bag was closed: readable
    check_cdr(humble_factory.typestore, rows)
    assert sum(1 for r in rows if r[0].endswith('/depth/image')) == 3
    assert (out / 'metadata.yaml').is_file()


@pytest.mark.parametrize('storage', ['test_bag_mcap', 'test_bag_sqlite3'])
@pytest.mark.parametrize('topic,kind', [('/test/sensor_msgs/image', 'bad_image'),
                                        ('/test/sensor_msgs/compressed_image',
                                         'undecodable_compressed')])
def test_malformed_synthetic_bags(shared_data, model, tmp_path, storage, topic, kind):
    src = shared_data / 'bags' / 'rosbags_rs_synthetic' / storage
    summary_file = tmp_path / 's.json'
    status = main(['bag', str(src), str(tmp_path / 'out'), '--model', str(model), '--quiet',
                   '--image-topic', topic, '--camera-info-topic',
                   '/test/sensor_msgs/camera_info', '--json-summary', str(summary_file)])
    summary = json.loads(summary_file.read_text())
    assert status == bag.EXIT_NOTHING
    assert summary['skipped'] == {kind: 2}
    assert summary['frames_read'] == 2 and summary['frames_written'] == 0
    assert read_bag(tmp_path / 'out') == []


def test_every_and_max_frames(bags, model, tmp_path):
    _, good, _ = bags
    out = tmp_path / 'out'
    summary_file = tmp_path / 's.json'
    assert main(['bag', str(good), str(out), '--model', str(model), '--quiet', '--every', '2',
                 '--max-frames', '2', '--image-topic', '/cam_a/image_raw', '--no-points',
                 '--json-summary', str(summary_file)]) == 0
    summary = json.loads(summary_file.read_text())
    assert summary['frames_written'] == 2             # frames 1 and 3 of 6; stops at 5
    assert summary['frames_skipped_every'] == 2
    assert summary['frames_read'] == 4
    rows = read_bag(out)
    # relative model, no scale: the relative map and the camera_info it goes with
    assert {r[0] for r in rows} == {'/cam_a/depth/relative', '/cam_a/depth/camera_info'}
    assert summary['frames_relative_only'] == 2


def test_copy_input_and_list(bags, model, tmp_path, capsys, humble_factory):
    _, good, _ = bags
    assert main(['bag', str(good), '--list']) == 0
    listing = capsys.readouterr().out
    assert '/cam_a/image_raw [Image, 6 msgs] + /cam_a/camera_info' in listing
    assert '/cam_b/image_raw/compressed [CompressedImage, 3 msgs] + /cam_b/camera_info' \
        in listing
    out = tmp_path / 'out'
    assert main(['bag', str(good), str(out), '--model', str(model), '--quiet', '--copy-input',
                 '--colorized', *FIXED]) == 0
    src = {(r[0], r[2], r[3]) for r in read_bag(good)}
    rows = read_bag(out)
    assert src <= {(r[0], r[2], r[3]) for r in rows}    # input copied byte for byte
    assert sum(1 for r in rows if r[0].endswith('depth/colorized')) == 9


def test_usage_errors(bags, model, tmp_path, capsys, monkeypatch):
    _, good, _ = bags
    real_build = bag.build_pipeline

    def no_model_for_bad_topics(options):
        assert options.image_topics != ['/nope'], 'topics are checked before the model loads'
        return real_build(options)

    monkeypatch.setattr(bag, 'build_pipeline', no_model_for_bad_topics)
    assert main(['bag', str(good), str(tmp_path / 'o')]) == 2          # no model
    assert 'no model given' in capsys.readouterr().err
    (tmp_path / 'exists').mkdir()
    (tmp_path / 'exists' / 'metadata.yaml').write_text('x')
    assert main(['bag', str(good), str(tmp_path / 'exists'), '--model', str(model)]) == 2
    assert 'exists and is not empty' in capsys.readouterr().err
    assert main(['bag', str(good), str(tmp_path / 'o2'), '--model', str(model),
                 '--image-topic', '/nope']) == 2
    assert "'/nope' is not in the bag" in capsys.readouterr().err
    assert main(['bag', str(good), str(tmp_path / 'o3'), '--model', str(model),
                 '--min-range', '5', '--max-range', '1']) == 2
    assert 'max_range' in capsys.readouterr().err


def test_corrupt_sparse_depth_message_is_counted_and_frames_are_kept(model, tmp_path,
                                                                     humble_factory):
    rgb = tum_rgb_small(W, H)
    depth = np.full((H, W), 2.0, np.float32)
    rows = []
    for t in (1, 2, 3):
        rows.append(('/cam/camera_info', t * S, camera_info(humble_factory, t * S, W, H, 'cam')))
        rows.append(('/cam/image_raw', t * S + 10, image(humble_factory, t * S, rgb, 'cam')))
        sparse = humble_factory.Image(header=humble_factory.header(t, 0, 'cam'), height=H,
                                      width=W, encoding='32FC1', is_bigendian=0, step=W * 4,
                                      data=depth.view(np.uint8).reshape(-1))
        raw = bytes(humble_factory.typestore.serialize_cdr(sparse, 'sensor_msgs/msg/Image'))
        rows.append(('/cam/sparse', t * S + 20,
                     ('sensor_msgs/msg/Image', raw[:40] if t == 2 else raw)))
    src = write_bag(tmp_path / 'in', humble_factory.typestore, rows)
    summary_path = tmp_path / 'summary.json'
    status = main(['bag', str(src), str(tmp_path / 'out'), '--model', str(model),
                   '--scale-source', 'sparse_depth', '--sparse-depth-topic', '/cam/sparse',
                   '--json-summary', str(summary_path), '--quiet'])
    summary = json.loads(summary_path.read_text())
    assert summary['skipped'].get('undeserializable_sparse_depth') == 1
    # the random tiny model never fits a positive scale: not one metric frame beats skipped
    assert status == bag.EXIT_NOT_METRIC if not summary['frames_metric'] else bag.EXIT_SKIPPED
    assert summary['frames_processed'] == 3
