"""The Flickr side of a world's images: who took each photo, its title, its IDs and its URLs.

Owns the metadata the images CSV states about a photo's Flickr page: `plan_photos` draws photo
IDs, secrets, farms and servers, authors (a few prolific ones, some under an alias, others under
an NSID), titles (a few of them dirty: commas, quotes, newlines, non-ASCII, empty) and whether the
row has a thumbnail; `photo_urls` and the landing and profile URLs give the CSV's URL cells. The
URL shapes themselves are `layout`'s, the contract with `world serve`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from openimages_pipe.world import layout as wl
from openimages_pipe.world.quota import quota

LICENSE = "https://creativecommons.org/licenses/by/2.0/"
MISSING_THUMBNAIL_RATE = 0.02  # rows whose Thumbnail300KURL is empty (no thumbnail route)
DIRTY_TITLE_RATE = 0.04  # per kind: a comma, double quotes, a newline, non-ASCII, empty
# fmt: off
AUTHORS = ("Michael Beat", "Karen", "José Luis Sánchez", "Søren Nielsen", "Zoë", "Jean-François",
           "Smith, John", "大島 健", "Björn", "ryan", "Dan & Lisa", "Ana María", "Łukasz", "mk",
           'Kevin "Kev" O\'Brien', "Ólafur", "Thomas", "Sarah", "Nguyễn Văn An")
PLACES = ("Dublin", "Paris", "Berlin", "San Francisco", "Kyoto", "Lisbon", "Toronto", "Oslo")
NOUNS = ("Bus", "my dog", "Rose garden", "Old truck", "Sunflowers", "The cat", "Birds", "Guitar",
         "Horse show", "Fruit market", "Drum circle", "Couch", "Lemons", "Red car", "Flowers")
UNICODE_TITLES = ("Café crème", "Straßenbahn in Köln", "東京タワー", "Jardín botánico", "Zürich ☀")
# fmt: on


@dataclass(frozen=True)
class FlickrPhoto:
    farm: int
    server: int
    photo_id: int
    secret: str  # of the `_o` original
    thumb_secret: str  # of the resized copies; differs from `secret`, as on Flickr
    user: str  # alias or NSID, as in the profile and landing URLs
    author: str
    title: str
    has_thumbnail: bool

    @property
    def landing_url(self) -> str:
        return f"https://www.flickr.com/photos/{self.user}/{self.photo_id}"

    @property
    def profile_url(self) -> str:
        return f"https://www.flickr.com/people/{self.user}/"


def plan_photos(count: int, rng: random.Random) -> list[FlickrPhoto]:
    """Flickr metadata for `count` photos; a few prolific authors took most of them."""
    users = [_user(rng, name) for name in AUTHORS]
    weights = [1 / (k + 1) for k in range(len(users))]
    kinds = ("comma", "quote", "newline", "unicode", "empty")
    dirt = quota(count, dict.fromkeys(kinds, DIRTY_TITLE_RATE), rng)
    no_thumb = quota(count, {"none": MISSING_THUMBNAIL_RATE}, rng)
    photos, seen = [], set()
    for k in range(count):
        photo_id = rng.randint(10**9, 10**11 - 1)  # 10-11 digits, like Flickr's
        while photo_id in seen:
            photo_id += 1
        seen.add(photo_id)
        secret, thumb = (f"{rng.getrandbits(40):010x}" for _ in range(2))
        thumb = thumb if thumb != secret else thumb[::-1]
        user, author = rng.choices(users, weights)[0]
        farm, server, title = rng.randint(1, 9), rng.randint(1000, 9999), _title(dirt[k], rng)
        photos.append(FlickrPhoto(farm, server, photo_id, secret, thumb, user, author, title,
                                  not no_thumb[k]))  # fmt: skip
    return photos


def _user(rng: random.Random, author: str) -> tuple[str, str]:
    """(URL name, display name): an alias for some users, an NSID like 12345678@N05 for others."""
    alias = "".join(c for c in author.lower().replace(" ", "-") if c.isascii() and c.isalnum())
    if alias and rng.random() < 0.5:
        return alias, author
    return f"{rng.randint(10**7, 10**8 - 1)}@N0{rng.randint(0, 8)}", author


def _title(dirt: str, rng: random.Random) -> str:
    noun, place, year = rng.choice(NOUNS), rng.choice(PLACES), rng.randint(2005, 2016)
    clean = (f"IMG_{rng.randint(1, 9999):04d}", f"DSC{rng.randint(1, 99999):05d}", noun, place)
    dirty = {"comma": f"{noun}, {place}", "quote": f'"{noun}" in {place}', "empty": "",
             "newline": f"{noun}\n{place} {year}",
             "unicode": rng.choice(UNICODE_TITLES)}  # fmt: skip
    return dirty[dirt] if dirt else rng.choice(clean)


def photo_urls(base: str, photo: FlickrPhoto, ext: str) -> tuple[str, str]:
    """(OriginalURL, Thumbnail300KURL or "" where the row has none)."""
    p = photo
    original = wl.original_url(base, p.farm, p.server, p.photo_id, p.secret, ext)
    thumb = wl.thumbnail_url(base, p.farm, p.server, p.photo_id, p.thumb_secret)
    return original, thumb if p.has_thumbnail else ""
