"""The dataset options every command that reads data shares, and loading the data a model needs.

One definition, so `train`, `compress`, `export`, `fit` and `eval` take the same flags with the same
help: the dataset name and folder, a folder dataset's image size and colour mode, and the anomaly class
of a reconstruction model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DatasetName = Annotated[str, typer.Option(help="digits, mnist, fashion_mnist, npz or folder.")]
DataDir = Annotated[
    Path | None, typer.Option(help="IDX folder (mnist), .npz file (npz) or image folder (folder).")
]
ImageSize = Annotated[
    str | None, typer.Option(help="folder: resize images to HxW (default: the model's input size).")
]
ColorMode = Annotated[
    str | None, typer.Option(help="folder: grayscale or rgb (default: the model's input channels).")
]
AnomalyClass = Annotated[
    int | None,
    typer.Option(help="Reconstruction: this class is the anomaly (held out of training, scored as AUC)."),
]


def load_for_model(
    model: Any,
    name: str,
    data_dir: Path | None,
    seed: int = 0,
    image_size: str | None = None,
    color_mode: str | None = None,
    anomaly_class: int | None = None,
) -> Any:
    """The dataset as ``model`` (a Keras model) needs it: images resized to its input, and a labelled
    dataset turned into a reconstruction one for an autoencoder (outputs shaped like its inputs)."""
    from edgeslim.data import load_dataset
    from edgeslim.data.anomaly import dataset_for_task

    options: dict[str, Any] = {"image_size": image_size, "color_mode": color_mode}
    if name == "folder":
        from edgeslim.data.folder import folder_options_for_model

        options = folder_options_for_model(model.inputs[0].shape, None, image_size, color_mode)
        options.pop("class_names")
    data = load_dataset(name, data_dir, seed=seed, anomaly_class=anomaly_class, **options)
    if data.task == "classification" and reproduces_its_input(model):
        data = dataset_for_task(data, "reconstruction")  # labels cannot be an autoencoder's targets
    return data


def reproduces_its_input(model: Any) -> bool:
    """One input, one output of the same shape: an autoencoder."""
    one = len(model.inputs) == 1 and len(model.outputs) == 1
    return one and tuple(model.inputs[0].shape[1:]) == tuple(model.outputs[0].shape[1:])


def load_for_artifact(
    model: Any,
    name: str,
    data_dir: Path | None,
    image_size: str | None = None,
    color_mode: str | None = None,
    anomaly_class: int | None = None,
) -> Any:
    """The dataset as an exported artifact (a runtime model) needs it, without TensorFlow: images
    resized to its input and labelled in its class order, and labels turned into its task's targets."""
    from edgeslim.data import load_dataset
    from edgeslim.data.anomaly import dataset_for_task

    options: dict[str, Any] = {"image_size": image_size, "color_mode": color_mode}
    if name == "folder":
        from edgeslim.data.folder import folder_options_for_model

        options = folder_options_for_model(model.inputs[0].shape, model.class_names, image_size, color_mode)
    data = load_dataset(name, data_dir, anomaly_class=anomaly_class, **options)
    return dataset_for_task(data, model.task)  # an autoencoder on a labelled dataset reconstructs it
