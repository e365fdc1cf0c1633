"""Installs the toolkit's packages: model, tff_sim, export, benchmarks.

The pinned environment (requirements.lock, TensorFlow Federated with
--no-deps) is installed by the Makefile; ``install_requires`` lists the
direct dependencies for anyone installing the packages into their own
environment.
"""

import setuptools

setuptools.setup(
    name="ondevice-audio-ssl",
    version="0.1.0",
    description=("On-device and federated training of self-supervised audio "
                 "encoders: TFF simulation, TFLite export, benchmarks."),
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(
        include=["model", "model.*", "tff_sim", "tff_sim.*", "export",
                 "export.*", "benchmarks", "benchmarks.*"]),
    install_requires=[
        "absl-py", "numpy<2", "scipy", "tensorflow==2.14.1",
        "tflite-runtime==2.14.0", "librosa", "soundfile", "scikit-learn",
        "matplotlib", "tqdm",
    ],
    entry_points={
        "console_scripts": [
            "audio-ssl-model=model.__main__:run",
            "audio-ssl-corpus=model.datasets.generate_main:run",
            "audio-ssl-train=model.train_main:run",
            "audio-ssl-demo=benchmarks.demo_main:run",
            "audio-ssl-federated=tff_sim.__main__:run",
            "audio-ssl-worker=tff_sim.worker_main:run",
            "audio-ssl-export=export.__main__:run",
            "audio-ssl-device=export.device_main:run",
            "audio-ssl-bench=benchmarks.__main__:run",
            "audio-ssl-quality=benchmarks.quality_main:run",
            "audio-ssl-sim-bench=benchmarks.simulation_main:run",
            "audio-ssl-train-step-bench=benchmarks.train_step_main:run",
            "audio-ssl-op-profile=benchmarks.op_profile_main:run",
            "audio-ssl-fed-quality=benchmarks.federated_quality_main:run",
            "audio-ssl-fassl=benchmarks.fassl_main:run",
            "audio-ssl-fm-validation=benchmarks.fm_validation_main:run",
            "audio-ssl-distill=benchmarks.distill_main:run",
            "audio-ssl-fedsa=benchmarks.fedsa_main:run",
        ],
    },
)
