"""Spansh-shaped system records rendered straight to compact JSON text from a seeded RNG."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final, Literal

#: The moment the synthetic dumps are "generated" at; every date lies before it.
REFERENCE_EPOCH: Final = 1795489965  # 2026-11-24 03:12:45 UTC

RecordKind = Literal["galaxy", "systems"]

#: Keys of every ``galaxy*.json`` record and their JSON types (``None`` means null is allowed).
GALAXY_KEYS: Final[dict[str, tuple[type | None, ...]]] = {
    "id64": (int,),
    "name": (str,),
    "coords": (dict,),
    "allegiance": (str, None),
    "government": (str,),
    "primaryEconomy": (str,),
    "secondaryEconomy": (str,),
    "security": (str,),
    "population": (int,),
    "bodyCount": (int,),
    "mainStar": (str,),
    "needsPermit": (bool,),
    "date": (str,),
    "bodies": (list,),
    "stations": (list,),
}
#: Extra keys of a populated ``galaxy*.json`` record.
POPULATED_KEYS: Final[dict[str, tuple[type | None, ...]]] = {
    "controllingFaction": (dict,),
    "factions": (list,),
}
#: Keys of every ``systems*.json`` record.
SYSTEMS_KEYS: Final[dict[str, tuple[type | None, ...]]] = {
    "id64": (int,),
    "name": (str,),
    "mainStar": (str,),
    "coords": (dict,),
    "updateTime": (str,),
}
#: Keys of every station object.
STATION_KEYS: Final = ("name", "id", "updateTime", "type", "distanceToArrival", "economies")


@dataclass(frozen=True)
class RecordSpec:
    """What one dump holds.

    ``populated`` makes every system inhabited; ``stations`` gives every system at least one
    station (fleet carriers included); neither gives the galaxy-wide mix, mostly uninhabited.
    """

    kind: RecordKind = "galaxy"
    populated: bool = False
    stations: bool = False
    main_star: str | None = None
    window_days: float = 3650.0


def _terms(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


_SYLLABLES: Final = _terms(
    "Pru|Aescs|Eol|Prou|Syn|Uefe|Blae|Drye|Hypo|Phl|Eorl|Oob|Flyoo|Gria|Byoo|Wreg|Oe|Col|Swoi|"
    "Dryau|Ploi|Thuec|Scheau|Bleia|Choo|Sagoo|Eoch|Floa|Hyp|Aeb|Stuem|Boe|Wepai|Clooku|Prai"
)
_CATALOGUES: Final = _terms("HIP|HD|LHS|Wolf|Ross|LP|Gliese|BD+|LTT|G")
_STARS: Final = (
    ("M (Red dwarf) Star", 40),
    ("K (Yellow-Orange) Star", 16),
    ("G (White-Yellow) Star", 8),
    ("F (White) Star", 6),
    ("A (Blue-White) Star", 3),
    ("B (Blue-White) Star", 1),
    ("L (Brown dwarf) Star", 10),
    ("T (Brown dwarf) Star", 6),
    ("Y (Brown dwarf) Star", 2),
    ("T Tauri Star", 3),
    ("White Dwarf (DA) Star", 2),
    ("Neutron Star", 2),
    ("Black Hole", 1),
)
_PLANETS: Final = _terms(
    "Icy body|Rocky body|High metal content world|Rocky ice world|Class I gas giant|"
    "Class II gas giant|Class III gas giant|Gas giant with water based life|Water world|"
    "Metal rich body|Earth-like world|Ammonia world"
)
_ATMOSPHERES: Final = _terms("No atmosphere|Thin Carbon dioxide|Thin Ammonia|Thin Sulphur dioxide")
_VOLCANISM: Final = _terms("No volcanism|Minor Water Magma|Major Silicate Vapour Geysers")
_TERRAFORM: Final = _terms("Not terraformable|Terraformable|Terraformed")
_ALLEGIANCES: Final = _terms("Federation|Empire|Alliance|Independent")
_GOVERNMENTS: Final = _terms(
    "Democracy|Corporate|Dictatorship|Patronage|Feudal|Confederacy|Communism|Cooperative|"
    "Theocracy|Anarchy"
)
_ECONOMIES: Final = _terms(
    "Agriculture|Extraction|Refinery|Industrial|High Tech|Military|Tourism|Colony|Service"
)
_SECURITY: Final = _terms("High|Medium|Low|Anarchy")
_STATES: Final = _terms("None|Boom|Expansion|War|Election|Investment|Outbreak")
_POWERS: Final = _terms("Aisling Duval|Edmund Mahon|Felicia Winters|Li Yong-Rui|Zemina Torval")
_STATION_TYPES: Final = _terms(
    "Coriolis Starport|Orbis Starport|Ocellus Starport|Outpost|Planetary Outpost|"
    "Planetary Port|Asteroid base|Mega ship|Settlement"
)
_SERVICES: Final = _terms(
    "Dock|Market|Outfitting|Shipyard|Refuel|Repair|Restock|Contacts|Missions|Tuning|"
    "Black Market|Crew Lounge|Search and Rescue|Universal Cartographics|Interstellar Factors|"
    "Material Trader|Technology Broker|Vista Genomics|Pioneer Supplies|Bartender"
)
_SURNAMES: Final = _terms(
    "Ehrlich|Furukawa|Hahn|Ramelli|Galileo|Abraham|Daedalus|Jameson|Chelomey|Garay|Lave|Leoni|"
    "Haber|Tuan|Ross|Kotov|Wiener|Kepler|Gagarin|Stein|Noether|Bohr|Fermi|Curie|Heisenberg"
)
_STATION_SUFFIXES: Final = _terms("City|Dock|Orbital|Port|Station|Enterprise|Hub")
_FACTION_FORMS: Final = (
    "Party of {}",
    "{} Jet Comms Company",
    "{} Purple Holdings",
    "Workers of {} Free",
    "{} Crimson Bridge Org",
    "{} Dominion",
    "Independent {} Liberals",
)
_COMMODITIES: Final = tuple(
    tuple(pair.split(":"))
    for pair in _terms(
        "Tritium:Chemicals|Gold:Metals|Palladium:Metals|Water:Chemicals|Hydrogen Fuel:Chemicals|"
        "Food Cartridges:Foods|Fruit and Vegetables:Foods|Grain:Foods|Liquor:Legal Drugs|"
        "Consumer Technology:Technology|Computer Components:Technology|"
        "Land Enrichment Systems:Technology|Power Generators:Machinery|Water Purifiers:Machinery|"
        "Semiconductors:Industrial Materials|Superconductors:Industrial Materials|"
        "Bauxite:Minerals|Painite:Minerals|Low Temperature Diamonds:Minerals|Animal Meat:Foods|"
        "Beer:Legal Drugs|Clothing:Consumer Items|Steel:Metals|Titanium:Metals"
    )
)


# Pools of pre-rendered fragments: far more than a 32 KiB deflate window holds. Sizes are powers
# of two so that a 16-bit random draw indexes them with a shift.
_POOL_SIZE: Final = 16384
_DATES: Final = 4096
_CATALOGUE_SHARE: Final = 5243  # of 65536: 8 % of names are catalogue names such as ``HIP 12345``


def _pool_rng(name: str) -> random.Random:
    return random.Random(f"ed-extractor-demo/{name}")


@cache
def _sector_names() -> tuple[str, ...]:
    rng = _pool_rng("sectors")
    names: set[str] = set()
    while len(names) < 2048:
        word = "".join(rng.choice(_SYLLABLES).lower() for _ in range(rng.randint(1, 3))).title()
        other = "".join(rng.choice(_SYLLABLES).lower() for _ in range(rng.randint(1, 2))).title()
        names.add(f"{word} {other}" if rng.random() < 0.7 else word)
    return tuple(sorted(names))


@cache
def _name_suffixes() -> tuple[str, ...]:
    """Procedural suffixes such as ``NC-M d7-192``."""
    rng = _pool_rng("suffixes")
    r = rng.random
    out = []
    for _ in range(_POOL_SIZE):
        a, b, c = (chr(65 + int(r() * 26)) for _ in range(3))
        mass = "abcdefgh"[int(r() * r() * 8)]
        n = int(r() * 40)
        out.append(f"{a}{b}-{c} {mass}{f'{n}-' if n else ''}{int(r() * 3000)}")
    return tuple(out)


@cache
def _axes() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Galactic coordinates in light years, multiples of 1/32 as in the game."""
    r = _pool_rng("coords").random
    xs = tuple(repr(int((r() - 0.5) * 1_400_000) / 32) for _ in range(_POOL_SIZE))
    ys = tuple(repr(int((r() - 0.5) * r() * 100_000) / 32) for _ in range(_POOL_SIZE))
    zs = tuple(repr(int(r() * 2_200_000 - 700_000) / 32) for _ in range(_POOL_SIZE))
    return xs, ys, zs


@cache
def _star_table() -> tuple[str, ...]:
    """128 main-star types in proportion to their weights."""
    names, weights = zip(*_STARS, strict=True)
    return tuple(sorted(_pool_rng("stars").choices(names, weights, k=128)))


@cache
def _star_tails() -> tuple[str, ...]:
    """Star body fields after ``subType``, up to and including ``"updateTime":"``."""
    r = _pool_rng("stars").random
    return tuple(
        f'"distanceToArrival":0.0,"mainStar":true,"age":{int(r() * 13000)},'
        f'"luminosity":"{"V" if r() < 0.8 else "IV"}","absoluteMagnitude":{r() * 20},'
        f'"solarMasses":{r() * 3},"solarRadius":{r() * 2},'
        f'"surfaceTemperature":{int(r() * 30000)}.0,"rotationalPeriod":{r() * 30},'
        f'"axialTilt":0.0,"updateTime":"'
        for _ in range(_POOL_SIZE)
    )


def _choice(r: Callable[[], float], pool: Sequence[str]) -> str:
    return pool[int(r() * len(pool))]


@cache
def _planet_tails() -> tuple[str, ...]:
    """Planet body fields from ``subType`` up to and including ``"updateTime":"``."""
    r = _pool_rng("planets").random
    out = []
    for _ in range(_POOL_SIZE):
        landable = r() < 0.3
        out.append(
            f'"type":"Planet","subType":"{_choice(r, _PLANETS)}",'
            f'"distanceToArrival":{r() * 5000},"isLandable":{"true" if landable else "false"},'
            f'"gravity":{r() * 3},"earthMasses":{r() * 300},"radius":{r() * 70000},'
            f'"surfaceTemperature":{r() * 800},"surfacePressure":{0 if landable else r()},'
            f'"volcanismType":"{_choice(r, _VOLCANISM)}",'
            f'"atmosphereType":"{_choice(r, _ATMOSPHERES)}",'
            f'"terraformingState":"{_choice(r, _TERRAFORM)}","orbitalPeriod":{r() * 900},'
            f'"semiMajorAxis":{r() * 40},"orbitalEccentricity":{r() * 0.3},'
            f'"orbitalInclination":{(r() - 0.5) * 20},"argOfPeriapsis":{r() * 360},'
            f'"rotationalPeriod":{r() * 50},"rotationalPeriodTidallyLocked":false,'
            f'"axialTilt":{(r() - 0.5) * 3},"updateTime":"'
        )
    return tuple(out)


@cache
def _faction_tails() -> tuple[str, ...]:
    """Faction fields after ``name``, closing brace included."""
    r = _pool_rng("factions").random
    return tuple(
        f'"allegiance":"{_choice(r, _ALLEGIANCES)}","government":"{_choice(r, _GOVERNMENTS)}",'
        f'"influence":{r()},"state":"{_choice(r, _STATES)}"}}'
        for _ in range(_POOL_SIZE)
    )


@cache
def _service_lists() -> tuple[str, ...]:
    rng = _pool_rng("services")
    lists = []
    for _ in range(64):
        chosen = sorted(rng.sample(_SERVICES, rng.randint(5, len(_SERVICES))))
        lists.append("[" + ",".join(f'"{s}"' for s in chosen) + "]")
    return tuple(lists)


@cache
def _station_tails() -> tuple[str, ...]:
    """Station fields after ``controllingFaction``, up to the market's ``"updateTime":"``."""
    r = _pool_rng("stations").random
    services = _service_lists()
    heads = [
        f'{{"name":"{name}","symbol":"{name.replace(" ", "")}","category":"{category}",'
        f'"commodityId":{128049150 + number},'
        for number, (name, category) in enumerate(_COMMODITIES)
    ]
    out = []
    for _ in range(_POOL_SIZE // 4):
        primary = _choice(r, _ECONOMIES)
        share = int(r() * 60) + 40
        commodities = ",".join(
            f'{_choice(r, heads)}"demand":{int(r() * 50000)},"supply":{int(r() * 20000)},'
            f'"buyPrice":{int(r() * 9000)},"sellPrice":{int(r() * 9000)}}}'
            for _ in range(int(r() * 24))
        )
        out.append(
            f'"controllingFactionState":"{_choice(r, _STATES)}",'
            f'"distanceToArrival":{r() * 4000},"primaryEconomy":"{primary}",'
            f'"economies":{{"{primary}":{share},"{_choice(r, _ECONOMIES)}":{100 - share}}},'
            f'"services":{_choice(r, services)},"type":"{_choice(r, _STATION_TYPES)}",'
            f'"landingPads":{{"large":{int(r() * 8)},"medium":{int(r() * 12)},'
            f'"small":{int(r() * 16)}}},"market":{{"commodities":[{commodities}],'
            f'"prohibitedCommodities":[],"updateTime":"'
        )
    return tuple(out)


@cache
def _carrier_tails() -> tuple[str, ...]:
    """Fleet carrier fields after ``type``, closing brace included."""
    r = _pool_rng("carriers").random
    services = _service_lists()
    return tuple(
        f'"distanceToArrival":{r() * 2000},"primaryEconomy":"Carrier",'
        f'"economies":{{"Carrier":100}},"services":{_choice(r, services)},'
        f'"landingPads":{{"large":8,"medium":4,"small":4}}}}'
        for _ in range(_POOL_SIZE // 4)
    )


@cache
def _carrier_codes() -> tuple[str, ...]:
    rng = _pool_rng("carrier-codes")
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return tuple(
        f"{''.join(rng.choices(alphabet, k=3))}-{''.join(rng.choices(alphabet, k=3))}"
        for _ in range(_POOL_SIZE)
    )


@cache
def _station_names() -> tuple[str, ...]:
    return tuple(f"{name} {suffix}" for name in _SURNAMES for suffix in _STATION_SUFFIXES)


@cache
def _dates(window_days: float) -> tuple[str, ...]:
    """A sorted pool of ``YYYY-MM-DD HH:MM:SS+00`` dates within the window before the reference."""
    rng = random.Random(f"ed-extractor-demo/dates/{window_days!r}")
    span = max(1, int(window_days * 86400))
    stamps = sorted(REFERENCE_EPOCH - int(rng.random() * span) for _ in range(_DATES))
    return tuple(time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(s)) for s in stamps)


class _Renderer:
    """Renders records of one spec from one RNG, assembling per-record values and pooled parts.

    Hot paths index pools inline (``pool[int(r() * n)]``): a call per pick would cost more.
    """

    def __init__(self, spec: RecordSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rand = rng.random
        self.bits = rng.getrandbits
        self.randbytes = rng.randbytes
        self.sectors = _sector_names()
        self.suffixes = _name_suffixes()
        self.stars = _star_table()
        self.dates = _dates(spec.window_days)
        self.axes = _axes()
        if spec.kind == "galaxy":
            self.star_tails = _star_tails()
            self.planet_tails = _planet_tails()
            self.faction_tails = _faction_tails()
            self.station_tails = _station_tails()
            self.carrier_tails = _carrier_tails()
            self.carrier_codes = _carrier_codes()
            self.station_names = _station_names()

    def _draws(self, count: int, per_record: int) -> list[memoryview]:
        """``per_record`` streams of ``count`` random 16-bit values, drawn in one call."""
        draws = memoryview(self.randbytes(2 * per_record * count)).cast("H")
        return [draws[i::per_record] for i in range(per_record)]

    def names_and_coords(self, count: int) -> list[tuple[str, str]]:
        """Mostly procedural names (``Pru Aescs NC-M d7-192``), some catalogue ones; coordinates."""
        sectors, suffixes, (xs, ys, zs) = self.sectors, self.suffixes, self.axes
        n_cat = len(_CATALOGUES)
        return [
            (
                f"{sectors[s >> 5]} {suffixes[u >> 2]}"
                if s >= _CATALOGUE_SHARE
                else f"{_CATALOGUES[u % n_cat]} {u}",
                f'{{"x":{xs[x >> 2]},"y":{ys[y >> 2]},"z":{zs[z >> 2]}}}',
            )
            for s, u, x, y, z in zip(*self._draws(count, 5), strict=True)
        ]

    def render(self, count: int) -> list[str]:
        if self.spec.kind == "systems":
            return self.minimal(count)
        galaxy = self.galaxy
        return [galaxy(name, coords) for name, coords in self.names_and_coords(count)]

    def minimal(self, count: int) -> list[str]:
        stars, dates, fixed = self.stars, self.dates, self.spec.main_star
        ids = memoryview(self.randbytes(8 * count)).cast("Q")
        star_draws, date_draws = self._draws(count, 2)
        return [
            f'{{"id64":{q >> 9},"name":"{name}","mainStar":"{fixed or stars[st >> 9]}",'
            f'"coords":{coords},"updateTime":"{dates[d >> 4]}"}}'
            for q, (name, coords), st, d in zip(
                ids, self.names_and_coords(count), star_draws, date_draws, strict=True
            )
        ]

    def galaxy(self, name: str, coords: str) -> str:
        r, spec = self.rand, self.spec
        roll = r()
        populated = spec.populated or roll < (0.5 if spec.stations else 0.06)
        carriers = not populated and (spec.stations or roll < 0.08)
        id64 = self.bits(55)
        star = spec.main_star or _choice(r, self.stars)
        date = _choice(r, self.dates)
        body_count = int(r() * (24 if populated else 10)) + 1
        known = body_count if populated or r() < 0.5 else int(r() * body_count)
        bodies = self.bodies(name, id64, star, date, known)
        if populated:
            society, stations = self.society(name, body_count, date)
        else:
            society, stations = self.no_society(body_count, date, carriers)
        permit = "true" if r() < 0.002 else "false"
        return (
            f'{{"id64":{id64},"name":"{name}","coords":{coords},{society}'
            f'"mainStar":"{star}","needsPermit":{permit},"date":"{date}",'
            f'"bodies":[{bodies}],"stations":[{",".join(stations)}]}}'
        )

    def society(self, system: str, body_count: int, date: str) -> tuple[str, list[str]]:
        """A populated system's factions, economy, security and powers; and its stations."""
        r = self.rand
        first = int(r() * len(_FACTION_FORMS))
        factions = [
            _FACTION_FORMS[(first + k) % len(_FACTION_FORMS)].format(system)
            for k in range(int(r() * 5) + 2)
        ]
        allegiance = _choice(r, _ALLEGIANCES)
        government = _choice(r, _GOVERNMENTS)
        members = ",".join(f'{{"name":"{f}",{_choice(r, self.faction_tails)}' for f in factions)
        society = (
            f'"allegiance":"{allegiance}","government":"{government}",'
            f'"primaryEconomy":"{_choice(r, _ECONOMIES)}",'
            f'"secondaryEconomy":"{_choice(r, _ECONOMIES)}",'
            f'"security":"{_choice(r, _SECURITY)}","population":{int(10 ** (3 + r() * 7))},'
            f'"bodyCount":{body_count},"controllingFaction":{{"name":"{factions[0]}",'
            f'"government":"{government}","allegiance":"{allegiance}"}},'
            f'"factions":[{members}],'
        )
        if r() < 0.3:
            society += (
                f'"controllingPower":"{_choice(r, _POWERS)}",'
                f'"powers":["{_choice(r, _POWERS)}"],'
                f'"powerState":"{"Exploited" if r() < 0.5 else "Fortified"}",'
            )
        stations = [self.station(factions[0], date) for _ in range(int(r() * 4) + 1)]
        return society, stations

    def no_society(self, body_count: int, date: str, carriers: bool) -> tuple[str, list[str]]:
        """An uninhabited system's empty society; fleet carriers parked there, if ``carriers``."""
        r = self.rand
        society = (
            '"allegiance":null,"government":"None","primaryEconomy":"None",'
            '"secondaryEconomy":"None","security":"Anarchy","population":0,'
            f'"bodyCount":{body_count},'
        )
        stations = [self.carrier(date) for _ in range(int(r() * 3) + 1)] if carriers else []
        return society, stations

    def bodies(self, system: str, system_id64: int, star: str, date: str, count: int) -> str:
        if count == 0:
            return ""
        r = self.rand
        tails = self.planet_tails
        size = len(tails)
        out = [
            f'{{"id64":{system_id64},"bodyId":0,"name":"{system}","type":"Star",'
            f'"subType":"{star}",{_choice(r, self.star_tails)}{date}"}}'
        ]
        out.extend(
            f'{{"id64":{system_id64 | (i << 55)},"bodyId":{i},"name":"{system} {i}",'
            f'{tails[int(r() * size)]}{date}"}}'
            for i in range(1, count)
        )
        return ",".join(out)

    def station(self, faction: str, date: str) -> str:
        r = self.rand
        return (
            f'{{"name":"{_choice(r, self.station_names)}","id":{3_220_000_000 + self.bits(28)},'
            f'"updateTime":"{date}","controllingFaction":"{faction}",'
            f'{_choice(r, self.station_tails)}{date}"}}}}'
        )

    def carrier(self, date: str) -> str:
        r = self.rand
        return (
            f'{{"name":"{_choice(r, self.carrier_codes)}","id":{3_700_000_000 + self.bits(28)},'
            f'"updateTime":"{date}","type":"Drake-Class Carrier",{_choice(r, self.carrier_tails)}'
        )


def render_records(spec: RecordSpec, rng: random.Random, count: int) -> list[str]:
    """Render ``count`` records as compact JSON objects, one string each, without separators."""
    return _Renderer(spec, rng).render(count)
