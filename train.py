"""Train an AVS backbone with its original recipe: ``python train.py backbone=avsegformer data=...``.

``python train.py --cfg job`` prints the resolved configuration. All logic lives in
``openavs_st.training`` so tests can import it.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from openavs_st.config import cli_errors
    from openavs_st.data.clip import ClipError
    from openavs_st.training import train

    # A data folder that is not the dataset, or a clip that cannot be read: one line, exit 1.
    with cli_errors(extra=(ClipError,)):
        train(cfg)


if __name__ == "__main__":
    from openavs_st.config import run_hydra_cli

    # A configuration error (unknown preset or group option, missing ???, bad override, ...) prints one
    # `error: ...` line and exits 2.
    run_hydra_cli(main)
