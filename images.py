"""One training or test sample from one image: decoding a file, the augmentations of the recipes,
the normalisation.

A sample is a pure function of the image and of the random numbers drawn for it (``draws``:
data_iterator.py draws them from the seed and the sample's place in the stream), so any process
may compute it, in any order, and a resumed run computes the same one. Two augmentations:

- ``pad`` (the CIFAR recipe, and image folders of at most 64 pixels): the image fitted to S x S
  (a file: its shorter side resized to S, the centre cropped), padded by 4 zero pixels, a random
  S x S crop, a random horizontal flip; at test time the fitted image alone.
- ``resized`` (the ImageNet recipe): a random crop of 8 % to 100 % of the area with an aspect
  ratio in [3/4, 4/3], resized to S x S, a random flip, optionally colour jitter; at test time
  the shorter side resized to S * 256 / 224, the centre S x S crop.

Then (both) the normalisation with the dataset's mean and std, and optionally one cutout square.
A JPEG is decoded at the smallest of 1/1, 1/2, 1/4, 1/8 of its size that still holds the crop at
full resolution (Pillow's draft mode). Grayscale, palette, CMYK, RGBA and 16-bit images are
converted to RGB; an image smaller than the crop is resized up.
"""
import collections
import functools
import math

import numpy as np
from PIL import Image, ImageEnhance

PAD = 4                      # the pad augmentation's zero border
RESIZE = (256, 224)          # the resized recipe's test time: shorter side to S * 256 / 224, centre S
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # the random-resized crop's area fraction and aspect ratio
ATTEMPTS = 10                # crops tried before the centre crop (torchvision's rule)
NO_JITTER = (0.0, 0.0, 0.0, 0.0)

# how the samples of a split are made: size S, 'pad' or 'resized', whether to augment (training),
# the cutout side (0: none), the colour jitter (brightness, contrast, saturation, hue), mean and std
Recipe = collections.namedtuple('Recipe', 'size crop augment cutout jitter mean std')


def draws(recipe, rng, n):
    """The random numbers of one data epoch of ``n`` samples, one row per place in the epoch, drawn
    from ``rng`` in full whatever the flags, so that flags never shift what a sample receives: the
    pad crop's (dy, dx, flip, cutout y, cutout x), or one seed per sample for the resized crop."""
    if recipe.crop == 'pad':
        return (rng.randint(0, 2 * PAD + 1, n), rng.randint(0, 2 * PAD + 1, n), rng.randint(0, 2, n).astype(bool),
                rng.randint(0, recipe.size, n), rng.randint(0, recipe.size, n))
    return (rng.randint(0, 2 ** 31, n),)


@functools.lru_cache(maxsize=8)
def scale_shift(mean, std):
    """(1 / (255 std), mean / std) as float32 (3, 1, 1) arrays: x = pixel * scale - shift."""
    mean, std = (np.array(v, dtype=np.float32).reshape(3, 1, 1) for v in (mean, std))
    return 1.0 / (255.0 * std), mean / std


def normalise(image, recipe):
    """uint8 (3, S, S) to float32 (pixel / 255 - mean) / std."""
    scale, shift = scale_shift(recipe.mean, recipe.std)
    return (image * scale - shift).astype(np.float32)


def cut_out(x, cy, cx, side):
    """Zero a side x side square centred on (cy, cx), clipped at the borders (after normalisation)."""
    half, size = side // 2, x.shape[1]
    x[:, max(cy - half, 0):min(cy + half, size), max(cx - half, 0):min(cx + half, size)] = 0
    return x


def pad_crop(image, dy, dx, flip):
    """The pad augmentation of a uint8 (3, S, S) image: padded by PAD, cropped at (dy, dx), flipped."""
    size = image.shape[1]
    image = np.pad(image, ((0, 0), (PAD, PAD), (PAD, PAD)))[:, dy:dy + size, dx:dx + size]
    return image[:, :, ::-1] if flip else image


def array_sample(image, recipe, row):
    """The sample of an in-memory uint8 (3, S, S) image, ``row`` its draws (None at test time)."""
    if recipe.augment:
        image = pad_crop(image, *row[:3])
    x = normalise(image, recipe)
    return cut_out(x, row[3], row[4], recipe.cutout) if recipe.augment and recipe.cutout else x


# ---------------------------------------------------------------- files


def to_rgb(image):
    """An opened image of any mode as 8-bit RGB: 16-bit and 32-bit grayscale scaled down to 8 bits,
    palettes with transparency through RGBA, every other mode by Pillow's conversion."""
    if image.mode.startswith('I'):  # 'I;16*' (16-bit PNG) and 'I' (32-bit integers)
        pixels = np.asarray(image)
        if image.mode.startswith('I;16') or pixels.max() > 255:
            pixels = np.clip(pixels.astype(np.int64) >> 8, 0, 255)
        image = Image.fromarray(pixels.astype(np.uint8), 'L')
    elif image.mode in ('P', 'PA') and 'transparency' in image.info or image.mode == 'PA':
        image = image.convert('RGBA')
    return image if image.mode == 'RGB' else image.convert('RGB')


def decoded(image, draft_size):
    """An opened image decoded as RGB, a JPEG at the smallest DCT scale whose size is at least
    ``draft_size`` (w, h); raises what Pillow raises for a file that is no valid image."""
    image.draft('RGB', tuple(int(v) for v in draft_size))  # a no-op for other formats
    image.load()  # a truncated or corrupt file fails here
    return to_rgb(image)


def chw(image):
    """A PIL RGB image as a contiguous uint8 (3, H, W) (the normalisation of a strided view is 5 times slower)."""
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def resize_short(image, short):
    """Resize so that the shorter side is ``short`` (the other in proportion, truncated), bilinear."""
    width, height = image.size
    size = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
    return image if size == image.size else image.resize(size, Image.BILINEAR)


def centre_crop(image, size):
    """The centre ``size`` x ``size`` of an image at least that large."""
    width, height = image.size
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def resized_centre(path, short, size):
    """(3, size, size): the image's shorter side resized to ``short``, then its centre crop."""
    with Image.open(path) as image:
        ratio = short / min(image.size)
        image = decoded(image, (math.ceil(image.size[0] * ratio), math.ceil(image.size[1] * ratio)))
        return chw(centre_crop(resize_short(image, short), size))


def crop_box(width, height, rng):
    """The random-resized crop of a width x height image as (left, top, w, h): up to ATTEMPTS draws of
    an area fraction in SCALE and a log-uniform aspect ratio in RATIO, the first that fits; else the
    centre crop of the image with its aspect ratio clamped to RATIO."""
    area = width * height
    for _ in range(ATTEMPTS):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w + 1), rng.randint(0, height - h + 1), w, h
    aspect = width / height
    w, h = ((width, int(round(width / RATIO[0]))) if aspect < RATIO[0] else
            (int(round(height * RATIO[1])), height) if aspect > RATIO[1] else (width, height))
    return (width - w) // 2, (height - h) // 2, w, h


def jittered(image, rng, jitter):
    """Colour jitter: brightness, contrast and saturation factors uniform in [1 - j, 1 + j], a hue
    shift uniform in [-j, j] of the hue circle, applied in a random order (torchvision's
    ColorJitter); the factors are drawn whatever ``jitter`` is."""
    factors = [rng.uniform(max(0.0, 1 - j), 1 + j) for j in jitter[:3]] + [rng.uniform(-jitter[3], jitter[3])]
    order = rng.permutation(4)
    if tuple(jitter) == NO_JITTER:
        return image
    enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for k in order:
        if k < 3:
            image = enhancers[k](image).enhance(factors[k])
        elif factors[3]:
            hsv = np.array(image.convert('HSV'))
            hsv[:, :, 0] += np.uint8(int(factors[3] * 255) % 256)  # wraps around the hue circle
            image = Image.fromarray(hsv, 'HSV').convert('RGB')
    return image


def resized_train(path, recipe, seed):
    """The resized recipe's training image (3, S, S) and its cutout centre, from the sample's seed."""
    rng, size = np.random.RandomState(seed), recipe.size
    with Image.open(path) as image:
        width, height = image.size
        left, top, w, h = crop_box(width, height, rng)
        flip, cy, cx = rng.randint(2), rng.randint(size), rng.randint(size)
        image = decoded(image, (math.ceil(width * size / w), math.ceil(height * size / h)))
        sx, sy = image.size[0] / width, image.size[1] / height  # the draft's reduction
        image = image.resize((size, size), Image.BILINEAR, box=(left * sx, top * sy, (left + w) * sx,
                                                                (top + h) * sy))
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return chw(jittered(image, rng, recipe.jitter)), (cy, cx)


def file_sample(path, recipe, row):
    """The sample of the image file at ``path``, ``row`` its draws (None at test time)."""
    if recipe.crop == 'pad':  # the fitted image: shorter side to S, the centre
        return array_sample(resized_centre(path, recipe.size, recipe.size), recipe, row)
    if not recipe.augment:
        return normalise(resized_centre(path, recipe.size * RESIZE[0] // RESIZE[1], recipe.size), recipe)
    image, (cy, cx) = resized_train(path, recipe, int(row[0]))
    x = normalise(image, recipe)
    return cut_out(x, cy, cx, recipe.cutout) if recipe.cutout else x
