"""Vocabulary of the generated market universe: names, places, assets, label formats.

Real-looking lists come first; syllable generators take over when a large universe
exhausts them, so 20,000 events still get unique, readable titles. Everything draws from
the `random.Random` passed in (never the global RNG), so a seed fixes the vocabulary.
"""

from __future__ import annotations

import calendar
import random
import re
from datetime import date

FIRST_NAMES = (
    "Maria", "James", "Elena", "David", "Sofia", "Michael", "Aisha", "Robert", "Laura", "Daniel",
    "Grace", "Thomas", "Nadia", "Kevin", "Chloe", "Marcus", "Irene", "Victor", "Hannah", "Samuel",
    "Olivia", "Andre", "Priya", "Lucas", "Emma", "Omar", "Julia", "Felix", "Rosa", "Henry",
    "Clara", "Isaac", "Leah", "Martin", "Naomi", "Oscar", "Paula", "Ruben", "Sara", "Tobias",
    "Vera", "Walter", "Yara", "Adrian", "Bianca", "Carter", "Diana", "Ethan", "Fiona", "Gavin",
)
LAST_NAMES = (
    "Delgado", "Whitfield", "Brennan", "Okafor", "Lindqvist", "Castellano", "Harrow", "Mercer",
    "Novak", "Pereira", "Ashford", "Calloway", "Dunmore", "Ellison", "Fairbanks", "Galloway",
    "Hartley", "Iverson", "Jessup", "Kowalski", "Langford", "Maddox", "Nakamura", "Osei",
    "Prescott", "Quintero", "Rourke", "Santoro", "Thorne", "Underwood", "Vance", "Westbrook",
    "Yardley", "Zeller", "Abernathy", "Blackwood", "Carrington", "Donnelly", "Everett", "Fontaine",
    "Garrison", "Holloway", "Ingram", "Jaramillo", "Kendrick", "Lockhart", "Montague", "Norwood",
    "Oyelaran", "Pembroke", "Radcliffe", "Sinclair", "Tolliver", "Valdez", "Whitaker", "Okonkwo",
)
COUNTRIES = (
    # (country, adjective form for titles, party A, party B)
    ("United States", "US", "Democratic", "Republican"),
    ("Brazil", "Brazilian", "Workers'", "Liberal"),
    ("France", "French", "Renaissance", "National Rally"),
    ("Mexico", "Mexican", "Morena", "PAN"),
    ("South Korea", "South Korean", "Democratic", "People Power"),
    ("Colombia", "Colombian", "Historic Pact", "Democratic Center"),
    ("Chile", "Chilean", "Broad Front", "Republican"),
    ("Peru", "Peruvian", "Popular Force", "Free Peru"),
    ("Poland", "Polish", "Civic Coalition", "Law and Justice"),
    ("Romania", "Romanian", "Social Democratic", "National Liberal"),
    ("Philippines", "Philippine", "Lakas", "PDP"),
    ("Argentina", "Argentine", "Freedom Advances", "Peronist"),
    ("Kenya", "Kenyan", "UDA", "ODM"),
    ("Nigeria", "Nigerian", "APC", "PDP"),
    ("Portugal", "Portuguese", "Socialist", "Social Democratic"),
    ("Ecuador", "Ecuadorian", "ADN", "Citizen Revolution"),
)
PARTIES = ("Progressive", "Conservative", "Green", "Liberal", "Labour", "Unity", "Reform", "Civic", "National",
           "Social Democratic")
STATES = ("Ukraine", "Venezuela", "Iran", "Syria", "Yemen", "Lebanon", "Libya", "Sudan", "Somalia", "Mali")
CAPTURE_TARGETS = (
    "Pokrovsk", "Myrnohrad", "Kostiantynivka", "Kramatorsk", "Sloviansk", "Huliaipole", "Orikhiv",
    "Kupiansk", "Lyman", "Siversk", "Druzhkivka", "Zaporizhzhia", "Kherson", "Dobropillia",
    "Vovchansk", "Borova", "Stepnohirsk", "Bilozerske", "Rodynske", "Toretsk",
)
COMPANIES = (
    "OpenAI", "Anthropic", "SpaceX", "Stripe", "Databricks", "Revolut", "Discord", "Canva",
    "Klarna", "Shein", "Anduril", "Perplexity", "Mistral", "Figure AI", "Ramp", "Chime",
    "Plaid", "Rippling", "Epic Games", "Valve", "Scale AI", "Cerebras", "Kraken", "Fanatics",
)
PRODUCTS = (
    "GPT-6", "a foldable phone", "a humanoid robot", "smart glasses", "a self-driving taxi",
    "a new reasoning model", "a stablecoin", "a satellite phone", "an AI browser", "a VR headset",
)
ASSETS = (
    # (name, reference price)
    ("Bitcoin", 95000.0), ("Ethereum", 3500.0), ("Solana", 180.0), ("XRP", 2.4), ("Dogecoin", 0.35),
    ("Gold", 2600.0), ("Silver", 31.0), ("WTI crude oil", 70.0), ("the S&P 500", 6000.0),
    ("the Nasdaq 100", 21000.0), ("Tesla", 350.0), ("Nvidia", 150.0), ("Apple", 230.0),
    ("Cardano", 0.9), ("Chainlink", 22.0), ("Avalanche", 40.0),
)
NON_CRYPTO = frozenset(("Gold", "Silver", "WTI crude oil", "the S&P 500", "the Nasdaq 100", "Tesla", "Nvidia", "Apple"))
LEAGUES = (
    # (league, conference A, conference B, "Finals" word)
    ("NBA", "Eastern Conference", "Western Conference", "NBA Finals"),
    ("NHL", "Eastern Conference", "Western Conference", "Stanley Cup Final"),
    ("NFL", "AFC", "NFC", "Super Bowl"),
    ("MLB", "American League", "National League", "World Series"),
    ("WNBA", "Eastern Conference", "Western Conference", "WNBA Finals"),
    ("MLS", "Eastern Conference", "Western Conference", "MLS Cup"),
)
TEAM_CITIES = (
    "Boston", "Denver", "Phoenix", "Seattle", "Atlanta", "Portland", "Austin", "Detroit", "Miami",
    "Chicago", "Dallas", "Houston", "Toronto", "Vancouver", "Memphis", "Orlando", "Sacramento",
    "Charlotte", "Nashville", "Omaha", "Tulsa", "Raleigh", "Buffalo", "Cleveland", "Baltimore",
)
MASCOTS = (
    "Hawks", "Comets", "Titans", "Wolves", "Rangers", "Pilots", "Storm", "Falcons", "Miners",
    "Bison", "Foxes", "Mariners", "Knights", "Rockets", "Owls", "Stallions", "Grizzlies", "Herons",
)
OFFICES = ("Mayoral Election", "Governor Election", "Senate Race")
AWARDS = ("Best Picture", "Ballon d'Or", "Album of the Year", "Nobel Peace Prize", "Time Person of the Year",
          "NBA MVP", "Best Director", "Booker Prize")
SOCCER_LEAGUES = ("Premier League", "La Liga", "Serie A", "Bundesliga", "Ligue 1", "Eredivisie", "Primeira Liga",
                  "Scottish Premiership", "Belgian Pro League", "Super Lig")
CLUB_CITIES = ("Leeds", "Bristol", "Norwich", "Sevilla", "Valencia", "Bilbao", "Genoa", "Torino", "Bologna", "Hamburg",
               "Bremen", "Lyon", "Nantes", "Lens", "Utrecht", "Porto", "Braga", "Dundee", "Ghent", "Izmir")
CLUB_PREFIXES = ("Real", "Sporting", "Racing", "Dynamo", "Olympique", "Athletic")
CLUB_SUFFIXES = ("United", "City", "Rovers", "Wanderers", "Albion", "Town", "Athletic", "Rangers")
COUNTRY_TOPICS = (
    # (verb phrase, third person)
    ("ban TikTok", "bans TikTok"),
    ("legalize recreational cannabis", "legalizes recreational cannabis"),
    ("adopt Bitcoin as legal tender", "adopts Bitcoin as legal tender"),
    ("join BRICS", "joins BRICS"),
    ("launch a central bank digital currency", "launches a central bank digital currency"),
    ("ban smartphones in schools", "bans smartphones in schools"),
)
MULTI_COUNTRIES = ("Brazil", "France", "Mexico", "South Korea", "Colombia", "Chile", "Peru", "Poland", "Romania",
                   "Argentina", "Kenya", "Nigeria", "Portugal", "Ecuador", "Germany", "Spain", "Italy", "Japan",
                   "India", "Indonesia", "Turkey", "Egypt", "Vietnam", "Thailand", "Canada", "Australia")
PARTY_SUFFIXES = ("Alliance", "Movement", "Front", "Union", "Party")
_SYL_A = ("Vel", "Mor", "Tar", "Kel", "Dor", "Zan", "Bri", "Cal", "Fen", "Gor", "Hal", "Ist", "Jor", "Lun",
          "Mar", "Nor", "Ost", "Pel", "Quar", "Ros", "Sel", "Tor", "Ul", "Var", "Wes", "Yar", "Zel", "Ash")
_SYL_B = ("a", "e", "i", "o", "u", "ar", "en", "ir", "on", "ul", "av", "em")
_SYL_C = ("grad", "ovka", "ivka", "sk", "burg", "ton", "ville", "port", "mora", "dale", "heim", "stad")
_CO_A = ("Zen", "Vor", "Qua", "Lum", "Hex", "Nov", "Ark", "Bri", "Cor", "Dyn", "Ely", "Fal", "Gal", "Hol",
         "Ion", "Jet", "Kel", "Lyr", "Myr", "Nex", "Orb", "Pyx", "Rav", "Syl", "Tor", "Umb", "Vex", "Wyn")
_CO_B = ("tra", "ion", "ex", "ium", "ara", "ova", "ix", "on", "is", "yx", "ent", "ora")
_CO_C = (" Labs", " Systems", " Robotics", " AI", " Energy", " Bio", " Motors", " Pay", " Cloud", " Health")
_CO_MID = ("", "", "ma", "ri", "lo", "va", "te", "no")


def fictional_place(rng: random.Random) -> str:
    return rng.choice(_SYL_A) + rng.choice(_SYL_B) + rng.choice(_SYL_C)


def fictional_company(rng: random.Random) -> str:
    return rng.choice(_CO_A) + rng.choice(_CO_MID) + rng.choice(_CO_B) + rng.choice(_CO_C)


def fictional_surname(rng: random.Random) -> str:
    return rng.choice(_SYL_A) + rng.choice(_SYL_B) + rng.choice(("ssen", "ley", "ford", "ova", "ez", "ski", "son", "ard"))


def fictional_coin(rng: random.Random) -> str:
    return (rng.choice(_CO_A) + rng.choice(_CO_MID) + rng.choice(_CO_B)
            + rng.choice(("", " Coin", " Token", " Network", " Protocol")))


class Pool:
    """Hands out items of a real list in random order, then fictional ones from `gen`."""

    def __init__(self, rng: random.Random, items: tuple, gen) -> None:  # type: ignore[no-untyped-def]
        self.rng = rng
        self.items = list(items)
        rng.shuffle(self.items)
        self.gen = gen

    def take(self):  # type: ignore[no-untyped-def]
        if self.items:
            return self.items.pop()
        return self.gen(self.rng)


def placeholder_labels(rng: random.Random, word: str, k: int) -> list[str]:
    """`k` consecutive unnamed outcomes: "Person K", "Person L" (or "Person AB", "Person AC")."""
    letters = [chr(ord("A") + i) for i in range(26)]
    if rng.random() < 0.4:
        first = letters[rng.randrange(26 - k)]
        return [f"{word} {first}{letters[letters.index(first) + 1 + i]}" for i in range(k)]
    start = rng.randrange(26 - k)
    return [f"{word} {letters[start + i]}" for i in range(k)]


def person(rng: random.Random, surnames: Pool) -> str:
    return f"{rng.choice(FIRST_NAMES)} {surnames.take()}"


# --------------------------------------------------------------------------- dates, labels
def month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def add_months(d: date, months: int) -> date:
    """Month end `months` after the month of `d`."""
    idx = d.year * 12 + (d.month - 1) + months
    return month_end(idx // 12, idx % 12 + 1)


MONTHS = ("", "January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


def long_date(d: date) -> str:
    """'March 31, 2027'"""
    return f"{MONTHS[d.month]} {d.day}, {d.year}"


def short_date(d: date) -> str:
    """'March 31'"""
    return f"{MONTHS[d.month]} {d.day}"


def _trim(x: float) -> str:
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return s


def money(x: float) -> str:
    """'$100,000' / '$2.50' / '$180'"""
    if x >= 1000:
        return f"${x:,.0f}"
    if x >= 10:
        return f"${x:,.0f}" if x == int(x) else f"${x:,.2f}"
    return f"${x:.2f}"


def compact(x: float) -> str:
    """'120k' / '1.2M' / '2.5'"""
    if x >= 1_000_000:
        return f"{_trim(x / 1_000_000)}M"
    if x >= 1000:
        return f"{_trim(x / 1000)}k"
    return _trim(x)


def threshold_label(x: float, style: str, direction: str) -> str:
    if style == "arrow":
        return f"{'↑' if direction == 'above' else '↓'} {compact(x)}"
    if style == "compact" and x >= 1000:
        return f"${compact(x)}"
    return money(x)


def nice_step(x: float) -> float:
    """A round ladder step near 5% of a price."""
    raw = x * 0.05
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.01
    if raw < 1:
        for cand in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0):
            if cand >= raw:
                return cand
        return 1.0
    for mult in (1, 2, 2.5, 5, 10):
        if mag * mult >= raw:
            return mag * mult
    return mag * 10


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    return _NON_ALNUM.sub("-", text.lower()).strip("-")
