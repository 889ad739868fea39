"""Masks, overlay videos and metrics from a trained model:
``python infer.py model=EXPORT_DIR input=video.mp4`` (see ``configs/infer.yaml``).

All logic lives in ``openavs_st.inference`` so tests can import it.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="infer")
def main(cfg: DictConfig) -> None:
    from openavs_st.config import cli_errors
    from openavs_st.data.clip import ClipError
    from openavs_st.inference import run_inference

    with cli_errors(extra=(ClipError, FileNotFoundError)):
        run_inference(cfg)


if __name__ == "__main__":
    from openavs_st.config import run_hydra_cli

    # Configuration errors: one `error: ...` line, exit 2; a bad clip or missing file: one line, exit 1.
    run_hydra_cli(main)
