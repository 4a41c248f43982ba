"""The real PyDNet++ ONNX model on real RGB-D frames reproduces the table in the data README.

Protocol of ``../shared/data/README.md`` section 4: input ``im0`` NHWC [1, 448, 640, 3] RGB / 255
resized with cv2 INTER_AREA; output ``PSD/resize_images/ResizeBilinear``; prediction resized
bilinearly to the ground truth; valid GT 0.1-10 m (0.1-80 m for KITTI); least-squares scale and
shift in depth space. The network sees the image stretched to 640x448, so its output is the
same view at another aspect ratio: ``allow_aspect_change=True``.
"""

from __future__ import annotations

import cv2
from depth_node.evaluate import compute_metrics, EvaluationError, load_depth_file
import numpy as np
import pytest

# sample: (image, depth, scale, format, max depth, (valid px, AbsRel, delta1) from the README)
README_TABLE = {
    'open3d_tum': ('open3d_tum/TUM_color.png', 'open3d_tum/TUM_depth.png', 1 / 5000, 'auto',
                   10.0, (248250, 0.132, 0.817)),
    'open3d_sun': ('open3d_sun/SUN_color.jpg', 'open3d_sun/SUN_depth.png', 0.001, 'sun', 10.0,
                   (251188, 0.162, 0.754)),
    'open3d_nyu': ('open3d_nyu/NYU_color.ppm', 'open3d_nyu/NYU_depth.pgm', None, 'nyu-raw',
                   10.0, (285001, 0.185, 0.717)),
    'kitti_000000': ('kitti_object/000000_image_2.png',
                     'kitti_object/000000_velodyne_sparse_depth.png', 1 / 256, 'auto', 80.0,
                     (20209, 0.225, 0.547)),
    'kitti_000001': ('kitti_object/000001_image_2.png',
                     'kitti_object/000001_velodyne_sparse_depth.png', 1 / 256, 'auto', 80.0,
                     (18600, 0.427, 0.206)),
}


@pytest.fixture(scope='module')
def pydnet(shared_data):
    ort = pytest.importorskip('onnxruntime', reason='onnxruntime is not installed')
    path = shared_data / 'models/pydnet_pp/optimized_pydnet++.onnx'
    if not path.is_file():
        pytest.skip(f'PyDNet++ ONNX model not found at {path}')
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])

    def predict(image_path):
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        assert bgr is not None, image_path
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        x = cv2.resize(rgb, (640, 448), interpolation=cv2.INTER_AREA).astype(np.float32)
        out = session.run(['PSD/resize_images/ResizeBilinear'], {'im0': x[None] / 255.0})[0]
        return out[0, ..., 0]
    return predict


@pytest.mark.parametrize('sample', sorted(README_TABLE))
def test_pydnet_matches_readme_table(shared_data, pydnet, sample):
    image, depth, scale, fmt, max_depth, (n_valid, abs_rel, delta1) = README_TABLE[sample]
    rgbd = shared_data / 'rgbd'
    pred = pydnet(rgbd / image)
    assert pred.shape == (448, 640) and np.all(np.isfinite(pred))
    gt = load_depth_file(rgbd / depth, scale, fmt)
    with pytest.raises(EvaluationError, match='same view'):      # 640x448 is not 4:3
        compute_metrics(pred, gt, min_depth=0.1, max_depth=max_depth, align='scale-shift')
    m = compute_metrics(pred, gt, min_depth=0.1, max_depth=max_depth, align='scale-shift',
                        allow_aspect_change=True)
    assert m['n_valid'] == n_valid
    assert m['scale'] > 0 and m['warnings'] == []
    assert m['abs_rel'] == pytest.approx(abs_rel, abs=0.01)
    assert m['delta1'] == pytest.approx(delta1, abs=0.01)
    # the unaligned relative output is far from metres: alignment is what makes it comparable
    raw = compute_metrics(pred, gt, min_depth=0.1, max_depth=max_depth, align='none',
                          allow_aspect_change=True)
    assert raw['abs_rel'] > m['abs_rel'] + 0.1


def test_negative_scales_on_real_data_are_flagged(shared_data, pydnet):
    """The audit's cases: 7-Scenes stairs seq-01 and KITTI with the wrong space both warn."""
    rgbd = shared_data / 'rgbd'
    stairs = rgbd / '7scenes_stairs'
    gt = load_depth_file(stairs / 'seq-01_frame-000000.depth.png', 0.001, invalid_value=65535)
    pred = pydnet(stairs / 'seq-01_frame-000000.color.jpg')
    m = compute_metrics(pred, gt, 0.1, 10.0, align='scale-shift', allow_aspect_change=True)
    assert m['scale'] < 0 and len(m['warnings']) == 1     # README: Spearman -0.016 here
    assert 'anti-correlated' in m['warnings'][0]
    # PyDNet++ is depth-like (README): aligning it as inverse depth flips the sign on KITTI
    kitti = rgbd / 'kitti_object'
    gt = load_depth_file(kitti / '000000_velodyne_sparse_depth.png', 1 / 256)
    pred = pydnet(kitti / '000000_image_2.png')
    m = compute_metrics(pred, gt, 0.1, 80.0, align='scale-shift-disparity',
                        allow_aspect_change=True)
    assert m['scale'] < 0 and '--align scale-shift.' in m['warnings'][0]
    m = compute_metrics(pred, gt, 0.1, 80.0, align='scale-shift', allow_aspect_change=True)
    assert m['scale'] > 0 and m['warnings'] == []


def test_pydnet_through_the_metric_layer(shared_data, pydnet):
    """PyDNet++ (depth-like relative output) made metric by sparse depth: close to the LSQ fit."""
    from depth_node.metric import MetricConfig, MetricConverter
    from depth_node.models.card import ModelCard
    rgbd = shared_data / 'rgbd'
    gt = load_depth_file(rgbd / 'open3d_tum/TUM_depth.png', 1 / 5000)
    pred = cv2.resize(pydnet(rgbd / 'open3d_tum/TUM_color.png'), (640, 480),
                      interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng(0)
    valid = np.flatnonzero(np.isfinite(gt))
    sparse = np.full(gt.shape, np.nan, np.float32)
    pick = rng.choice(valid, valid.size // 20, replace=False)
    sparse.flat[pick] = gt.flat[pick]
    conv = MetricConverter(ModelCard(output_kind='relative_depth'),
                           MetricConfig(scale_source='sparse_depth', edge_threshold=0.0))
    depth, relative, report = conv.convert(pred, None, None, sparse)
    assert report.metric and relative is None
    m = compute_metrics(depth, gt, 0.1, 10.0)
    assert m['abs_rel'] < 0.132 + 0.03          # robust fit on 5 % vs LSQ on all pixels
