import json

import numpy as np
import pytest

from inverity.errors import UnknownIdError, UnsupportedInputError
from inverity.image import Image
from inverity.stages.base import Capabilities, Stage, get_stage, register_stage, list_stages


@register_stage
class _Identity(Stage):
    codec_id = "test-identity"
    capabilities = Capabilities(lossless=True, bit_depths=(8,), channels=(1, 3))
    options = ("level",)

    def encode(self, image: Image) -> bytes:
        self.check_input(image)
        return image.pixels.tobytes()


def test_config_round_trip() -> None:
    s = _Identity(quality=5, level=2)
    cfg = s.get_config()
    assert cfg == {"id": "test-identity", "quality": 5, "level": 2}
    assert get_stage(json.loads(json.dumps(cfg))) == s


def test_unknown_id_lists_available() -> None:
    with pytest.raises(UnknownIdError) as e:
        get_stage("no-such-codec")
    assert "test-identity" in str(e.value) and "no-such-codec" in str(e.value)
    assert "test-identity" in list_stages()


def test_unknown_option_refused() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        _Identity(colour=1)


def test_check_input_refuses_16_bit() -> None:
    img = Image(np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(UnsupportedInputError, match="16-bit"):
        _Identity().encode(img)
