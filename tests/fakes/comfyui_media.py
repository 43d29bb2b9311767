"""Pixel stand-ins and the media files the fake ComfyUI writes (PNG, APNG, WebP, MP4, WebM).

A ``Frames`` value stands for an IMAGE or MASK tensor: only its geometry and a fill colour are
tracked; pixels are rendered when a file is written, so huge graphs stay cheap.
"""

from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo


@dataclass(frozen=True)
class Frames:
    """A batch of images (channels 3 or 4) or masks (channels 1) of one size and colour.

    ``pixels``, when set, holds the batch as ComfyUI does ([count, height, width, channels]
    floats in 0..1): the weightless nodes compute it for real from a loaded image, so a
    template's output can be checked pixel by pixel. Without it only geometry and a fill colour
    are tracked, and pixels are rendered when a file is written, so huge graphs stay cheap.
    """

    width: int
    height: int
    count: int = 1
    channels: int = 3
    color: int = 0  # 0xRRGGBB for images; 0..255 grey level for masks
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, pixels: np.ndarray) -> Frames:
        """Frames holding ``pixels`` ([count, height, width, channels], floats in 0..1)."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim == 3:
            pixels = pixels[..., None]
        count, height, width, channels = pixels.shape
        return cls(width, height, count, channels, 0, pixels)

    def resized(self, width: int, height: int) -> Frames:
        # Geometry only: a node that does not compute pixels drops them rather than lie.
        return replace(self, width=max(1, int(width)), height=max(1, int(height)), pixels=None)

    def array(self) -> np.ndarray:
        """The batch as floats in 0..1, [count, height, width, channels] (a fill: uniform, as EmptyImage)."""
        if self.pixels is not None:
            return self.pixels
        if self.channels == 1:
            value: tuple[float, ...] = ((self.color & 0xFF) / 255.0,)
        else:
            value = tuple(((self.color >> shift) & 0xFF) / 255.0 for shift in (16, 8, 0))
            if self.channels == 4:
                value = (*value, 1.0)
        return np.broadcast_to(np.asarray(value, np.float32), (self.count, self.height, self.width, self.channels))

    def image(self, index: int = 0) -> Image.Image:
        if self.pixels is not None:
            # ComfyUI's savers: clip(255 * x, 0, 255) as uint8 (truncation).
            data = np.clip(self.pixels[index] * 255.0, 0, 255).astype(np.uint8)
            mode = {1: "L", 3: "RGB", 4: "RGBA"}[self.channels]
            return Image.fromarray(data[..., 0] if self.channels == 1 else data, mode)
        if self.channels == 1:
            return Image.new("L", (self.width, self.height), self.color & 0xFF)
        rgb = ((self.color >> 16) & 0xFF, (self.color >> 8) & 0xFF, self.color & 0xFF)
        # A faint per-frame ramp so that the frames of an animation differ.
        shade = (index * 7) % 32
        rgb = tuple(min(255, c + shade) for c in rgb)
        if self.channels == 4:
            return Image.new("RGBA", (self.width, self.height), (*rgb, 128))
        return Image.new("RGB", (self.width, self.height), rgb)

    def describe(self) -> str:
        """What ComfyUI's error reports show for a tensor input (a str of the tensor)."""
        return f"tensor(shape=[{self.count}, {self.height}, {self.width}, {self.channels}])"


def png_bytes(img: Image.Image, text: dict[str, str] | None = None, compress_level: int = 4) -> bytes:
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def png_text_chunks(prompt: dict | None, extra_pnginfo: dict | None) -> dict[str, str]:
    """ComfyUI stores the API prompt and every extra_pnginfo key (the UI workflow) as PNG text."""
    chunks: dict[str, str] = {}
    if prompt is not None:
        chunks["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        chunks[key] = json.dumps(value)
    return chunks


def animated_webp_bytes(frames: Frames, fps: float, lossless: bool = True, quality: int = 80, method: int = 4) -> bytes:
    images = [frames.image(i).convert("RGBA" if frames.channels == 4 else "RGB") for i in range(frames.count)]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=max(1, int(1000.0 / max(fps, 0.01))),  # ComfyUI: int(1000.0 / fps)
        lossless=lossless,
        quality=quality,
        method=method,
    )
    return buf.getvalue()


def apng_bytes(frames: Frames, fps: float, text: dict[str, str], compress_level: int = 4) -> bytes:
    images = [frames.image(i) for i in range(frames.count)]
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="PNG",
        save_all=True,
        append_images=images[1:],
        duration=max(1, int(1000.0 / max(fps, 0.01))),
        pnginfo=info,
        compress_level=compress_level,
    )
    return buf.getvalue()


# --- MP4: an ISO-BMFF file holding an H.264 stream of I_PCM macroblocks (raw samples, no
# prediction), which any H.264 decoder plays. Enough for a real, tiny, decodable video.


class _Bits:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def ue(self, value: int) -> None:
        value += 1
        length = value.bit_length()
        self.u(length - 1, 0)
        self.u(length, value)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while len(self.bits) % 8:
            self.bits.append(0)

    def raw(self, data: bytes) -> None:
        for byte in data:
            self.u(8, byte)

    def bytes_so_far(self) -> bytes:
        """The bits written so far (a whole number of bytes) as bytes."""
        out = bytearray()
        for i in range(0, len(self.bits), 8):
            byte = 0
            for bit in self.bits[i : i + 8]:
                byte = (byte << 1) | bit
            out.append(byte)
        return bytes(out)

    def trailing(self) -> bytes:
        self.bits.append(1)
        self.align_zero()
        out = bytearray()
        for i in range(0, len(self.bits), 8):
            byte = 0
            for bit in self.bits[i : i + 8]:
                byte = (byte << 1) | bit
            out.append(byte)
        return bytes(out)


_START_CODE_LIKE = re.compile(b"\x00\x00(?=[\x00-\x03])")


def _nal(nal_type: int, rbsp: bytes, ref_idc: int = 3) -> bytes:
    # Emulation prevention: 0x03 after every two zero bytes followed by a byte of 0..3.
    escaped = _START_CODE_LIKE.sub(b"\x00\x00\x03", rbsp)
    return bytes([(ref_idc << 5) | nal_type]) + escaped


def _h264_headers(mb_w: int, mb_h: int, width: int, height: int) -> tuple[bytes, bytes]:
    sps = _Bits()
    sps.u(8, 66)  # baseline profile
    sps.u(8, 0)
    sps.u(8, 40)  # level 4.0
    sps.ue(0)  # seq_parameter_set_id
    sps.ue(0)  # log2_max_frame_num_minus4
    sps.ue(2)  # pic_order_cnt_type
    sps.ue(0)  # max_num_ref_frames
    sps.u(1, 0)
    sps.ue(mb_w - 1)
    sps.ue(mb_h - 1)
    sps.u(1, 1)  # frame_mbs_only
    sps.u(1, 1)  # direct_8x8_inference
    crop_r, crop_b = (mb_w * 16 - width) // 2, (mb_h * 16 - height) // 2
    if crop_r or crop_b:
        sps.u(1, 1)
        sps.ue(0)
        sps.ue(crop_r)
        sps.ue(0)
        sps.ue(crop_b)
    else:
        sps.u(1, 0)
    sps.u(1, 0)  # vui
    pps = _Bits()
    pps.ue(0)
    pps.ue(0)
    pps.u(1, 0)  # CAVLC
    pps.u(1, 0)
    pps.ue(0)  # slice groups
    pps.ue(0)
    pps.ue(0)
    pps.u(1, 0)
    pps.u(2, 0)
    pps.se(0)
    pps.se(0)
    pps.se(0)
    pps.u(1, 1)  # deblocking filter control present
    pps.u(1, 0)
    pps.u(1, 0)
    return _nal(7, sps.trailing()), _nal(8, pps.trailing())


def _bt601_limited(rgb: np.ndarray) -> np.ndarray:
    """RGB in 0..1 to BT.601 limited-range Y'CbCr (16..235, 16..240), as PyAV's yuv420p frames hold:
    what a decoder assumes when the stream says nothing of its colours."""
    matrix = np.array(
        [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float32
    )
    return rgb @ matrix.T + np.array([16.0, 128.0, 128.0], dtype=np.float32)


def _h264_idr(img: Image.Image, mb_w: int, mb_h: int, idr_id: int) -> bytes:
    padded = Image.new("RGB", (mb_w * 16, mb_h * 16))
    padded.paste(img.convert("RGB"))
    ycc = _bt601_limited(np.asarray(padded, dtype=np.float32) / 255.0)
    # 4:2:0: each chroma sample is the mean of its 2×2 block. Samples of 0 are raised to 1 so no
    # macroblock's data can look like a start code.
    h, w = ycc.shape[:2]
    sub = ycc.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    luma, cb, cr = (np.clip(np.rint(p), 1, 255).astype(np.uint8) for p in (ycc[..., 0], sub[..., 1], sub[..., 2]))
    luma = luma.reshape(mb_h, 16, mb_w, 16).transpose(0, 2, 1, 3).reshape(mb_h * mb_w, 256)
    chroma = [p.reshape(mb_h, 8, mb_w, 8).transpose(0, 2, 1, 3).reshape(mb_h * mb_w, 64) for p in (cb, cr)]
    # Each macroblock: ue(25) = I_PCM (9 bits), zero bits up to the byte, then its 384 samples.
    # Every macroblock ends byte-aligned, so after the first one ue(25) + padding is 0x0D 0x00.
    blocks = np.concatenate([np.zeros((mb_h * mb_w, 2), np.uint8), luma, *chroma], axis=1)
    blocks[:, 0] = 0x0D
    s = _Bits()
    s.ue(0)  # first_mb_in_slice
    s.ue(7)  # I slice
    s.ue(0)  # pps id
    s.u(4, 0)  # frame_num
    s.ue(idr_id % 65536)
    s.u(1, 0)  # no_output_of_prior_pics
    s.u(1, 0)  # long_term_reference
    s.se(0)  # slice_qp_delta
    s.ue(1)  # deblocking off
    s.ue(25)  # the first macroblock's type: I_PCM
    s.align_zero()
    head = s.bytes_so_far()
    # rbsp_trailing_bits: a stop bit, then zeros to the byte.
    return _nal(5, head + blocks.tobytes()[2:] + b"\x80")


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version_flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version_flags), *payload)


def mp4_bytes(frames: Frames, fps: float) -> bytes:
    width, height = frames.width - frames.width % 2, frames.height - frames.height % 2
    width, height = max(2, width), max(2, height)
    mb_w, mb_h = (width + 15) // 16, (height + 15) // 16
    sps, pps = _h264_headers(mb_w, mb_h, width, height)
    samples = [_h264_idr(frames.image(i).resize((width, height)), mb_w, mb_h, i) for i in range(frames.count)]
    samples = [struct.pack(">I", len(s)) + s for s in samples]
    # A whole number of ticks per frame at any fps (PyAV's files give 24 fps exactly, not 1000/42).
    timescale = max(1, round(max(fps, 0.01) * 1000))
    delta = 1000
    duration = delta * len(samples)
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    mdat_payload = b"".join(samples)
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),
        struct.pack(">H", len(sps)),
        sps,
        bytes([1]),
        struct.pack(">H", len(pps)),
        pps,
    )
    avc1 = _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),
        bytes(16),
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x00480000, 0x00480000),
        bytes(4),
        struct.pack(">H", 1),
        bytes(32),
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)

    def moov(chunk_offset: int) -> bytes:
        stbl = _box(
            b"stbl",
            _full(b"stsd", 0, struct.pack(">I", 1), avc1),
            _full(b"stts", 0, struct.pack(">III", 1, len(samples), delta)),
            _full(b"stsc", 0, struct.pack(">IIII", 1, 1, len(samples), 1)),
            _full(b"stsz", 0, struct.pack(">II", 0, len(samples)), *(struct.pack(">I", len(s)) for s in samples)),
            _full(b"stco", 0, struct.pack(">II", 1, chunk_offset)),
        )
        minf = _box(
            b"minf",
            _full(b"vmhd", 1, bytes(8)),
            _box(b"dinf", _full(b"dref", 0, struct.pack(">I", 1), _full(b"url ", 1))),
            stbl,
        )
        mdia = _box(
            b"mdia",
            _full(b"mdhd", 0, struct.pack(">IIII", 0, 0, timescale, duration), struct.pack(">HH", 0x55C4, 0)),
            _full(b"hdlr", 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00"),
            minf,
        )
        tkhd = _full(
            b"tkhd",
            3,
            struct.pack(">IIIII", 0, 0, 1, 0, duration),
            bytes(8),
            struct.pack(">hhhH", 0, 0, 0, 0),
            matrix,
            struct.pack(">II", width << 16, height << 16),
        )
        mvhd = _full(
            b"mvhd",
            0,
            struct.pack(">IIII", 0, 0, timescale, duration),
            struct.pack(">IH", 0x10000, 0x100),
            bytes(10),
            matrix,
            bytes(24),
            struct.pack(">I", 2),
        )
        return _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))

    head_len = len(ftyp) + len(moov(0)) + 8
    return ftyp + moov(head_len) + _box(b"mdat", mdat_payload)


# --- WebM: a WebM (Matroska) file of VP8 key frames. A lossy WebP image is a VP8 key frame in a
# RIFF wrapper, so Pillow's WebP encoder provides the frames and only the container is built here.


def _vp8_key_frame(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="WEBP", lossless=False, quality=80)
    data = buf.getvalue()
    if data[12:16] != b"VP8 ":
        raise ValueError("Pillow did not write a simple lossy WebP")
    size = struct.unpack("<I", data[16:20])[0]
    return data[20 : 20 + size]


def _ebml_id(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _ebml_size(size: int) -> bytes:
    return (size | (1 << 56)).to_bytes(8, "big")


def _ebml(eid: int, payload: bytes) -> bytes:
    return _ebml_id(eid) + _ebml_size(len(payload)) + payload


def _ebml_uint(eid: int, value: int) -> bytes:
    return _ebml(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def webm_bytes(frames: Frames, fps: float) -> bytes:
    header = _ebml(
        0x1A45DFA3,
        _ebml_uint(0x4286, 1)
        + _ebml_uint(0x42F7, 1)
        + _ebml_uint(0x42F2, 4)
        + _ebml_uint(0x42F3, 8)
        + _ebml(0x4282, b"webm")
        + _ebml_uint(0x4287, 4)
        + _ebml_uint(0x4285, 2),
    )
    info = _ebml(0x1549A966, _ebml_uint(0x2AD7B1, 1_000_000) + _ebml(0x4D80, b"tower-fake-comfyui"))
    video = _ebml(0xE0, _ebml_uint(0xB0, frames.width) + _ebml_uint(0xBA, frames.height))
    track = _ebml(
        0xAE,
        _ebml_uint(0xD7, 1) + _ebml_uint(0x73C5, 1) + _ebml_uint(0x83, 1) + _ebml(0x86, b"V_VP8") + video,
    )
    step_ms = max(1, round(1000.0 / max(fps, 0.01)))
    blocks = b""
    for i in range(frames.count):
        data = _vp8_key_frame(frames.image(i))
        blocks += _ebml(0xA3, b"\x81" + struct.pack(">hB", i * step_ms, 0x80) + data)
    cluster = _ebml(0x1F43B675, _ebml_uint(0xE7, 0) + blocks)
    segment = _ebml(0x18538067, info + _ebml(0x1654AE6B, track) + cluster)
    return header + segment
