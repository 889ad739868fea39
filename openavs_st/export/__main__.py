"""``python -m openavs_st.export ckpt=PATH out=DIR [onnx=true] [cfg=PATH] [metrics=PATH]``"""

from openavs_st.export.cli import main

raise SystemExit(main())
