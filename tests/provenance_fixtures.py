"""Image files that declare their origin, built in the tests (no file is checked in).

- a test certificate chain (root CA -> signing certificate) generated with ``cryptography``;
- images signed with Content Credentials through ``c2pa-python``'s Builder, with or without
  a generative-AI ``digitalSourceType``, and a copy with tampered pixels;
- PNGs with a Stable Diffusion web UI ``parameters`` chunk and with ComfyUI graphs;
- a JPEG with an XMP ``DigitalSourceType`` and one whose EXIF Software names a generator;
- a HEIC written by pillow-heif with an EXIF orientation, an AVIF written by Pillow.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from functools import cache

from PIL import Image, PngImagePlugin

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
SIGNER_CN = "Cue Lens Test Signer"
SIGNER_ORG = "Cue Lens Test Org"
GENERATOR = "FakeGen Studio"


def picture(size=(96, 64), colour=(120, 30, 200)) -> Image.Image:
    """A small image with some structure (a stripe), so re-encoding changes bytes."""
    img = Image.new("RGB", size, colour)
    for x in range(size[0] // 4):
        for y in range(size[1]):
            img.putpixel((x, y), (10, 200, 40))
    return img


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


@cache
def test_chain() -> tuple[bytes, bytes, bytes]:
    """(certificate chain PEM: signer then root, signer's private key PEM, root PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    end = start + dt.timedelta(days=60)

    def usage(**on):
        flags = dict.fromkeys(
            (
                "digital_signature", "content_commitment", "key_encipherment",
                "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                "encipher_only", "decipher_only",
            ),
            False,
        )  # fmt: skip
        return x509.KeyUsage(**{**flags, **on})

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIGNER_ORG),
            ]
        )

    def certificate(subject, issuer, public_key, issuer_key, *, ca: bool, extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical)
        return builder.sign(issuer_key, hashes.SHA256())

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = name("Cue Lens Test Root")
    root = certificate(
        root_name,
        root_name,
        root_key.public_key(),
        root_key,
        ca=True,
        extensions=[
            (usage(key_cert_sign=True, crl_sign=True), True),
            (x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False),
        ],
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        name(SIGNER_CN),
        root_name,
        key.public_key(),
        root_key,
        ca=False,
        extensions=[
            (usage(digital_signature=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False),
        ],
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(pem) + root.public_bytes(pem), key_pem, root.public_bytes(pem)


MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
}


def signed(
    fmt: str = "JPEG",
    source_type: str = "trainedAlgorithmicMedia",
    *,
    ingredient: bool = False,
    img: Image.Image | None = None,
) -> bytes:
    """An image signed with Content Credentials: a ``c2pa.created`` action by GENERATOR
    with ``source_type`` (C2PA requires one on ``c2pa.created``; ``digitalCapture`` for a
    camera), optionally with an ingredient."""
    import c2pa

    chain, key, _ = test_chain()
    action = {
        "action": "c2pa.created",
        "softwareAgent": {"name": GENERATOR},
        "digitalSourceType": IPTC + source_type,
    }
    manifest = {
        "claim_generator_info": [{"name": GENERATOR, "version": "2.1"}],
        "title": f"made.{fmt.lower()}",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }
    builder = c2pa.Builder(manifest)
    if ingredient:
        parent = encode(picture(colour=(10, 10, 10)), "JPEG")
        builder.add_ingredient(
            {"title": "source-photo.jpg", "relationship": "componentOf"},
            "image/jpeg",
            io.BytesIO(parent),
        )
    source = io.BytesIO(encode(img or picture(), fmt))
    out = io.BytesIO()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    builder.sign(signer, MIME[fmt], source, out)
    return out.getvalue()


def tampered(data: bytes) -> bytes:
    """A signed JPEG with one byte of its entropy-coded pixels changed."""
    end = data.rfind(b"\xff\xd9")
    changed = bytearray(data)
    changed[end - 20] ^= 0x55
    return bytes(changed)


A1111_PARAMETERS = (
    "a lighthouse at dusk, oil painting\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567, Size: 96x64, "
    'Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Lora hashes: "a: 1, b: 2"'
)


def sd_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_PARAMETERS)
    return encode(picture(), "PNG", pnginfo=info)


COMFY_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {"seed": 987654321, "steps": 20, "positive": ["6", 0], "negative": ["7", 0]},
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux1-dev.safetensors"}},
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a red fox in snow", "clip": ["4", 1]},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
}
COMFY_WORKFLOW = {
    "nodes": [
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["flux1-dev.safetensors"]},
        {"id": 3, "type": "KSampler", "widgets_values": [987654321, "fixed", 20]},
        {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a red fox in snow"]},
    ]
}


def comfy_png(*, workflow_only: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    if not workflow_only:
        info.add_text("prompt", json.dumps(COMFY_PROMPT))
    info.add_text("workflow", json.dumps(COMFY_WORKFLOW))
    return encode(picture(), "PNG", pnginfo=info)


def xmp_packet(source_type: str, *, attribute: bool = False) -> bytes:
    if attribute:
        body = f'<rdf:Description Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"/>'
    else:
        body = (
            "<rdf:Description><Iptc4xmpExt:DigitalSourceType>"
            f"{IPTC}{source_type}</Iptc4xmpExt:DigitalSourceType></rdf:Description>"
        )
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        f"{body}</rdf:RDF></x:xmpmeta>"
    ).encode()


def xmp_jpeg(source_type: str = "trainedAlgorithmicMedia", *, attribute: bool = False) -> bytes:
    return encode(picture(), "JPEG", xmp=xmp_packet(source_type, attribute=attribute))


def exif_software_jpeg(software: str = "Adobe Firefly") -> bytes:
    exif = Image.Exif()
    exif[0x0131] = software
    return encode(picture(), "JPEG", exif=exif.tobytes())


def camera_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS R5"
    exif[0x0131] = "Adobe Lightroom 7.0"
    return encode(picture(), "JPEG", exif=exif.tobytes())


def rotated_heic(size=(40, 20)) -> bytes:
    """A HEIC (pillow-heif) whose EXIF says "rotate 90 degrees clockwise" (orientation 6).

    The stored picture is ``size`` with its left quarter blue; upright, it is
    ``size[1]`` x ``size[0]`` with its top quarter blue.
    """
    import pillow_heif

    pillow_heif.register_heif_opener()
    img = Image.new("RGB", size, (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, size[0] // 4, size[1]))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15 Pro"
    return encode(img, "HEIF", exif=exif.tobytes(), quality=90)


def rotated_avif(size=(40, 20)) -> bytes:
    """An AVIF (Pillow's own plugin) with EXIF orientation 6, as :func:`rotated_heic`."""
    img = Image.new("RGB", size, (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, size[0] // 4, size[1]))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "AVIF", exif=exif.tobytes(), quality=90)
