"""semsegpaddle: semantic segmentation on PaddlePaddle, extensible through pluggy plugins."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "semsegpaddle" / "core" / "common" / "version.py").read_text()).group(1)

# paddle is not in install_requires: paddlepaddle (CPU) and paddlepaddle-gpu both provide the module
# `paddle`, and a hard requirement would pull the CPU build over a user's GPU build. Pick an extra.
setup(
    name="semsegpaddle",
    version=VERSION,
    description="Semantic segmentation on PaddlePaddle: PSPNet, DeepLabv3, GloRe, GINet; plugin-based",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["semsegpaddle", "semsegpaddle.*"]),
    package_data={"semsegpaddle": ["plugins/configs/*.yaml", "core/serve/index.html"]},
    install_requires=[
        "pluggy>=1.3",
        "click>=8.1",
        "pyyaml>=6.0",
        "numpy>=1.23",
        "pillow>=9.0",
        "safetensors>=0.4",
        "opencv-python-headless>=4.8",
        "tqdm>=4.60",
        "tifffile>=2023.1",
    ],
    extras_require={
        "cpu": ["paddlepaddle>=3.0"],
        "gpu": ["paddlepaddle-gpu>=3.0"],
        # ml_dtypes: onnxruntime.quantization imports it (semseg export --int8)
        "onnx": ["paddle2onnx>=2.0", "onnxruntime>=1.17", "ml_dtypes>=0.4"],
        "visualdl": ["visualdl>=2.5"],
        "tensorboard": ["tensorboardX>=2.6"],
        "mlflow": ["mlflow-skinny>=2.10"],
        "serve": ["starlette>=0.37", "uvicorn>=0.30", "python-multipart>=0.0.9"],
        "test": ["pytest>=7", "paddlepaddle>=3.0", "setuptools>=70", "wheel", "paddle2onnx>=2.0", "onnxruntime>=1.17",
                 "ml_dtypes>=0.4", "cityscapesscripts>=2.2", "visualdl>=2.5", "playwright>=1.40", "import-linter>=2.0",
                 "tensorboardX>=2.6", "mlflow-skinny>=2.10",
                 "mkdocs-material>=9.5", "mkdocs-click>=0.8",
                 "starlette>=0.37", "uvicorn>=0.30", "python-multipart>=0.0.9", "httpx>=0.27"],
        # PaddleSeg 2.8 itself is installed with --no-deps (its pinned opencv-python needs numpy 1);
        # these are the packages it imports
        "reference": ["torch==2.14.1", "torchvision==0.29.1", "timm>=1.0", "filelock", "prettytable",
                      "scikit-learn", "scipy"],
    },
    entry_points={
        "console_scripts": ["semseg = semsegpaddle.cli:main"],
        "semsegpaddle": [
            "resnet = semsegpaddle.plugins.backbones.resnet",
            "hrnet = semsegpaddle.plugins.backbones.hrnet",
            "efficientnet = semsegpaddle.plugins.backbones.efficientnet",
            "deeplabv3 = semsegpaddle.plugins.decoders.deeplab",
            "deeplabv3p = semsegpaddle.plugins.decoders.deeplabv3p",
            "pspnet = semsegpaddle.plugins.decoders.pspnet",
            "fcn = semsegpaddle.plugins.decoders.fcn",
            "glore = semsegpaddle.plugins.decoders.glore",
            "ginet = semsegpaddle.plugins.decoders.ginet",
            "synthetic = semsegpaddle.plugins.datasets.synthetic",
            "folder = semsegpaddle.plugins.datasets.folder",
            "ade20k = semsegpaddle.plugins.datasets.ade20k",
            "voc = semsegpaddle.plugins.datasets.voc",
            "cityscapes = semsegpaddle.plugins.datasets.cityscapes",
            "pascal_context = semsegpaddle.plugins.datasets.pascal_context",
            "losses = semsegpaddle.plugins.losses.standard",
            "loggers = semsegpaddle.plugins.loggers.standard",
            "configs = semsegpaddle.plugins.configs",
        ],
    },
)
