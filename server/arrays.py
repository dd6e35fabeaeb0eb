"""Array type aliases shared by the server's modules."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

BgrImage = npt.NDArray[np.uint8]
"""HxWx3 uint8, OpenCV's BGR order."""

FloatTensor = npt.NDArray[np.float32]
AnyArray = npt.NDArray[Any]
