"""Train an AVS backbone with its original recipe: ``python train.py backbone=avsegformer data=...``.

``python train.py --cfg job`` prints the resolved configuration. All logic lives in
``openavs_st.training`` so tests can import it.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from openavs_st.config import ConfigError
    from openavs_st.training import train

    try:
        train(cfg)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
