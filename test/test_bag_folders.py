"""Issue 10 point 4: image folders and videos.

Depth images in an input folder are left out with a count; an existing non-empty output
(folder or bag) is refused unless ``--overwrite``, which leaves no stale file; ``--colorized``
and ``--output-encoding 32FC1`` are written; ``--intrinsics`` replaces a calibration file;
``--sparse-depth-dir`` pairs metric depth by file name stem for ``sparse_depth`` scaling.
"""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import numpy as np
import pytest
from test_bag_support import pydnet, read_bag

pytest.importorskip('rosbags', reason='rosbags is needed by the bag tool (pip install rosbags)')
cv2 = pytest.importorskip('cv2')

from depth_node import bag  # noqa: E402, I100
from depth_node.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXED = ['--scale-source', 'fixed', '--fixed-scale', '1.0', '--fixed-shift', '0.5']
TUM_K = '525,525,319.5,239.5'


@pytest.fixture
def tum(shared_data) -> Path:
    return shared_data / 'rgbd' / 'open3d_tum'


def _folder(tum: Path, path: Path, depth_too: bool = True) -> Path:
    path.mkdir()
    shutil.copy(tum / 'TUM_color.png', path / 'a.png')
    if depth_too:
        shutil.copy(tum / 'TUM_depth.png', path / 'a_gt.png')       # a 16-bit depth PNG
        depth = cv2.imread(str(tum / 'TUM_depth.png'), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(path / 'b_gt.tiff'), depth.astype(np.float32) / 5000)   # float metres
    return path


def _run(*args) -> tuple[int, dict]:
    summary = Path(args[1]).with_suffix('.json')
    status = main(['bag', *map(str, args), '--quiet', '--json-summary', str(summary)])
    return status, json.loads(summary.read_text()) if summary.exists() else {}


def test_depth_images_in_the_folder_are_left_out_and_counted(tum, model, tmp_path, capsys):
    folder = _folder(tum, tmp_path / 'in')
    status, summary = _run(folder, tmp_path / 'out', '--model', model, '--intrinsics', TUM_K,
                           *FIXED)
    assert status == bag.EXIT_OK
    assert summary['depth_images_left_out'] == 2
    assert summary['frames_read'] == summary['frames_written'] == 1
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['a.ply', 'a_depth.png']
    assert '2 depth images left out' in capsys.readouterr().err


def test_existing_output_needs_overwrite_which_leaves_no_stale_file(
        tum, model, tmp_path, capsys, monkeypatch):
    folder = _folder(tum, tmp_path / 'in', depth_too=False)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'old_depth.png').write_bytes(b'stale')
    (out / 'old.ply').write_bytes(b'stale')
    real_build = bag.build_pipeline

    def no_model(options):
        raise AssertionError('the model was loaded before the output was checked')
    monkeypatch.setattr(bag, 'build_pipeline', no_model)
    args = [folder, out, '--model', model, '--intrinsics', TUM_K, *FIXED]
    assert _run(*args)[0] == bag.EXIT_USAGE
    err = capsys.readouterr().err
    assert 'exists and is not empty' in err and '--overwrite' in err
    (out / 'notes.txt').write_text('mine')          # never deleted, even with --overwrite
    assert _run(*args, '--overwrite')[0] == bag.EXIT_USAGE
    assert "'notes.txt'" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ['notes.txt', 'old.ply', 'old_depth.png']
    (out / 'notes.txt').unlink()
    monkeypatch.setattr(bag, 'build_pipeline', real_build)
    assert _run(*args, '--overwrite')[0] == bag.EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == ['a.ply', 'a_depth.png']


def test_bag_output_needs_overwrite_too(shared_data, model, tmp_path, capsys):
    src = shared_data / 'bags' / 'tum_rgbd_sample_mcap'
    out = tmp_path / 'out'
    assert _run(src, out, '--model', model, *FIXED)[0] == bag.EXIT_OK
    first = read_bag(out)
    assert _run(src, out, '--model', model, *FIXED)[0] == bag.EXIT_USAGE
    assert 'exists and is not empty' in capsys.readouterr().err
    assert _run(src, out, '--model', model, *FIXED, '--no-points', '--overwrite')[0] == 0
    again = read_bag(out)          # a new bag, nothing of the first one left
    assert {r[0] for r in again} == {r[0] for r in first} - {'/camera/color/points'}


def test_colorized_and_float_metres_are_written(tum, model, tmp_path):
    folder = _folder(tum, tmp_path / 'in', depth_too=False)
    assert _run(folder, tmp_path / 'mm', '--model', model, '--intrinsics', TUM_K, *FIXED,
                '--no-points')[0] == 0
    assert _run(folder, tmp_path / 'm', '--model', model, '--intrinsics', TUM_K, *FIXED,
                '--no-points', '--colorized', '--output-encoding', '32FC1')[0] == 0
    written = sorted(p.name for p in (tmp_path / 'm').iterdir())
    assert written == ['a_colorized.png', 'a_depth.tiff']
    metres = cv2.imread(str(tmp_path / 'm' / 'a_depth.tiff'), cv2.IMREAD_UNCHANGED)
    mm = cv2.imread(str(tmp_path / 'mm' / 'a_depth.png'), cv2.IMREAD_UNCHANGED)
    assert metres.dtype == np.float32 and metres.shape == mm.shape == (480, 640)
    valid = mm > 0
    assert valid.mean() > 0.5
    np.testing.assert_allclose(metres[valid], mm[valid] / 1000.0, atol=0.0006)
    colour = cv2.imread(str(tmp_path / 'm' / 'a_colorized.png'), cv2.IMREAD_UNCHANGED)
    assert colour.dtype == np.uint8 and colour.shape == (480, 640, 3)
    assert len(np.unique(colour.reshape(-1, 3), axis=0)) > 20      # a colour map, not flat
    # the tool's own float output reads as metres in evaluate
    from depth_node.evaluate import load_depth_file
    np.testing.assert_array_equal(load_depth_file(tmp_path / 'm' / 'a_depth.tiff', None),
                                  np.where(np.isfinite(metres) & (metres != 0), metres,
                                           np.nan))


def test_intrinsics_equal_the_calibration_file(tum, model, tmp_path):
    folder = _folder(tum, tmp_path / 'in', depth_too=False)
    calib = tmp_path / 'tum.yaml'
    calib.write_text(
        'image_width: 640\nimage_height: 480\ncamera_name: tum\n'
        'camera_matrix: {rows: 3, cols: 3, data: [525, 0, 319.5, 0, 525, 239.5, 0, 0, 1]}\n'
        'distortion_model: plumb_bob\n'
        'distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n')
    assert _run(folder, tmp_path / 'file', '--model', model, '--camera-info', calib,
                *FIXED)[0] == 0
    assert _run(folder, tmp_path / 'k', '--model', model, '--intrinsics', TUM_K, *FIXED)[0] == 0
    for name in ('a_depth.png', 'a.ply'):
        assert (tmp_path / 'file' / name).read_bytes() == (tmp_path / 'k' / name).read_bytes()


@pytest.mark.parametrize('bad, message', [('1,2,3', 'is not fx,fy,cx,cy'),
                                          ('0,525,319.5,239.5', 'fx and fy > 0')])
def test_bad_intrinsics_are_a_usage_error(tum, model, tmp_path, capsys, bad, message):
    folder = _folder(tum, tmp_path / 'in', depth_too=False)
    with pytest.raises(SystemExit) as exit_info:
        main(['bag', str(folder), str(tmp_path / 'out'), '--model', str(model),
              '--intrinsics', bad])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_sparse_depth_dir_pairs_by_name_and_scales(tum, tmp_path):
    from depth_node.evaluate import compute_metrics
    onnx, card = pydnet(REPO)
    images, depths = tmp_path / 'rgb', tmp_path / 'depth'
    images.mkdir()
    depths.mkdir()
    shutil.copy(tum / 'TUM_color.png', images / '0001.png')
    shutil.copy(tum / 'TUM_color.png', images / '0002.png')      # no depth of that name
    shutil.copy(tum / 'TUM_depth.png', depths / '0001.png')      # TUM: 1/5000 m
    status, summary = _run(images, tmp_path / 'out', '--model', onnx, '--card', card,
                           '--intrinsics', TUM_K, '--scale-source', 'sparse_depth',
                           '--sparse-depth-dir', depths, '--sparse-depth-scale', '0.0002',
                           '--scale-hold-frames', '0')
    assert summary['frames_metric'] == 1 and summary['scale']['accepted_fits'] == 1
    assert summary['relative_only_reasons'] == {
        'sparse_depth: no sparse depth image for this frame': 1}
    assert status == bag.EXIT_OK
    pred = cv2.imread(str(tmp_path / 'out' / '0001_depth.png'), cv2.IMREAD_UNCHANGED) / 1000.0
    gt = cv2.imread(str(tum / 'TUM_depth.png'), cv2.IMREAD_UNCHANGED) / 5000.0
    pred[pred == 0] = np.nan
    gt[gt == 0] = np.nan
    metrics = compute_metrics(pred.astype(np.float32), gt.astype(np.float32), min_depth=0.1,
                              max_depth=10.0, align='none')
    assert metrics['abs_rel'] < 0.2 and metrics['delta1'] > 0.7


def test_folder_calibration_of_another_aspect_ratio_fails_first(tum, model, tmp_path, capsys,
                                                                monkeypatch):
    folder = _folder(tum, tmp_path / 'in', depth_too=False)

    def no_model(options):
        raise AssertionError('the model was loaded before the calibration was checked')
    monkeypatch.setattr(bag, 'build_pipeline', no_model)
    out = tmp_path / 'out'
    assert main(['bag', str(folder), str(out), '--model', str(model), '--camera-info',
                 str(_square(tmp_path / 'square.yaml'))]) == bag.EXIT_USAGE
    err = capsys.readouterr().err
    assert 'is a calibration of 480x480 images' in err and 'carries 640x480' in err
    assert not out.exists()


def _square(path: Path) -> Path:
    path.write_text(
        'image_width: 480\nimage_height: 480\ncamera_name: sq\n'
        'camera_matrix: {rows: 3, cols: 3, data: [400, 0, 239.5, 0, 400, 239.5, 0, 0, 1]}\n'
        'distortion_model: plumb_bob\n'
        'distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n')
    return path
