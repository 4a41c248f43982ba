"""Install script for depth_node (ament_python package, also pip-installable without ROS)."""

from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'depth_node'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', package_name, 'config'),
         glob('config/*.yaml') + glob('config/*.rviz') + glob('config/*.xml')),
        (os.path.join('share', package_name, 'config', 'models'), glob('config/models/*.yaml')),
    ],
    python_requires='>=3.10',
    install_requires=['numpy>=1.21', 'opencv-python-headless>=4.5', 'PyYAML>=5.4', 'setuptools'],
    extras_require={
        'bag': ['rosbags>=0.10', 'tqdm'],
        'onnxruntime': ['onnxruntime>=1.16', 'onnx>=1.14'],
        'torch': ['torch>=2.1', 'transformers>=4.45', 'onnx>=1.14', 'onnxscript'],
        'tensorrt': ['tensorrt>=8.6', 'torch>=2.1'],
        'test': ['pytest', 'hypothesis', 'rosbags>=0.10', 'tqdm', 'scipy', 'ruff'],
    },
    zip_safe=True,
    maintainer='depth_node developers',
    maintainer_email='dev@depth-node.local',
    description='Monocular metric depth images and point clouds for ROS 2 from a camera and '
                'its camera_info, with TensorRT, ONNX Runtime or PyTorch backends.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'depth_node = depth_node.node:main',
            'depth-node = depth_node.cli:main',
        ],
    },
)
