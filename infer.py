"""Masks, overlay videos and metrics from a trained model:
``python infer.py model=EXPORT_DIR input=video.mp4`` (see ``configs/infer.yaml``).

All logic lives in ``openavs_st.inference`` so tests can import it.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="infer")
def main(cfg: DictConfig) -> None:
    from openavs_st.config import ConfigError
    from openavs_st.data.clip import ClipError
    from openavs_st.inference import run_inference

    try:
        run_inference(cfg)
    except (ConfigError, ClipError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
