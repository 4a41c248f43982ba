"""Helpers shared by the camera tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

from depth_node.camera import CameraModel
import numpy as np

CALIBRATION_FILES = (
    'euroc_cam0_plumb_bob_partial.yaml',
    'isaac_chessboard0_equidistant_D5.camera_info.json',
    'isaac_tf_camera_plumb_bob.camera_info.json',
    'isaac_wide_fov_left_rational_polynomial.camera_info.json',
    'isaac_wide_fov_left_rational_polynomial.yaml',
    'lidarstick_180_cam0_equidistant_partial.yaml',
    't265_fisheye1_equidistant.yaml',
    't265_fisheye2_equidistant.yaml',
    'usb_cam_test_camera_plumb_bob_rectified.yaml',
    'utbm_bumblebee2_left_plumb_bob.yaml',
    'uzhfpv_cam0_forward_equidistant_partial.yaml',
    'visensor_p22021_cam0_equidistant.yaml',
)


def calibration(shared_data: Path, name: str) -> Path:
    """Path of a calibration file in the shared data."""
    return shared_data / 'calibration' / name


def pinhole(width: int = 640, height: int = 480, fx: float = 525.0, fy: float = 520.0,
            cx: float = 319.5, cy: float = 239.5, D=(), model: str = '',
            **kwargs) -> CameraModel:
    """Return a synthetic camera with P = [K | 0] and R = I."""
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    return CameraModel(width=width, height=height, K=K, D=np.asarray(D, dtype=float),
                       R=np.eye(3), P=np.hstack([K, np.zeros((3, 1))]),
                       distortion_model=model, **kwargs)


def cv2_project(camera: CameraModel, points: np.ndarray) -> np.ndarray:
    """Project (N, 3) points with OpenCV's own functions and the camera's effective K and D."""
    import cv2

    pts = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 1, 3)
    K = camera.intrinsic_matrix()
    zero = np.zeros(3)
    if camera.has_distortion and camera.distortion_model == 'equidistant':
        out, _ = cv2.fisheye.projectPoints(pts, zero, zero, K, camera.D[:4].copy())
    elif camera.has_distortion:
        out, _ = cv2.projectPoints(pts, zero, zero, K, camera.D.copy())
    else:
        out, _ = cv2.projectPoints(pts, zero, zero, K, None)
    return out.reshape(-1, 2)


def t265_fisheye_frames(shared_data: Path, factory) -> list[tuple[str, object, object, int]]:
    """Return the T265 fisheye frames in recording order: (camera, Image, CameraInfo, log time).

    ``factory`` builds the messages (rclpy for a graph, rosbags for a bag); each camera_info
    comes from that camera's equidistant calibration, with the image's stamp and frame id.
    """
    from depth_node.bagio import deserialize, open_reader
    from depth_node.calibration import load_calibration
    from depth_node.images import make_image
    cameras = dict.fromkeys(('fisheye1', 'fisheye2'))
    frames = []
    with open_reader(shared_data / 'bags' / 't265_trimmed_locoffice_ros2') as reader:
        for conn, log_time, raw in reader.messages():
            name = conn.topic.split('/')[2]
            if name not in cameras or not conn.topic.endswith('image_raw'):
                continue
            msg = deserialize(reader, raw, conn.msgtype, conn.topic)
            header = factory.header(msg.header.stamp.sec, msg.header.stamp.nanosec,
                                    msg.header.frame_id)
            pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width)
            if cameras[name] is None:
                cameras[name] = load_calibration(
                    calibration(shared_data, f't265_{name}_equidistant.yaml'),
                    frame_id=msg.header.frame_id)
            frames.append((name, make_image(factory, header, pixels, msg.encoding),
                           cameras[name].to_camera_info(factory, header), log_time))
    return frames
