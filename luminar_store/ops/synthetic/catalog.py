"""The fixed vocabulary of synthetic data: cities, crime types, daily rhythms and the phrases reports are made of.

Pure data, no randomness: ``world.py`` draws from it with a seeded generator. Times of day are local hours; a
city's ``utc_offset`` is its standard time (daylight saving is ignored, a shift of one hour at most).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "City",
    "CrimeType",
    "CITIES",
    "CRIME_TYPES",
    "HOURLY_PROFILES",
    "TEMPLATES",
    "ITEMS",
    "VEHICLES",
    "SUSPECTS",
    "DIRECTIONS",
    "CLOSINGS",
    "WEAPONS",
    "REPORTER_KINDS",
    "time_phrase",
]


@dataclass(frozen=True)
class City:
    """A city of the synthetic world: centre, how far its reports spread (km, one standard deviation), its share
    of reports (``weight``), standard UTC offset (hours), faker locale for street names (``None``: the city's
    own ``street_pattern``) and real district names where its hotspots lie."""

    name: str
    country: str
    continent: str
    lat: float
    lng: float
    spread_km: float
    weight: float
    utc_offset: float
    locale: str | None
    districts: tuple[str, ...]
    street_pattern: str = ""


CITIES: tuple[City, ...] = (
    City("New York", "US", "North America", 40.7128, -74.0060, 6.0, 10, -5, "en_US",
         ("Midtown", "Harlem", "Lower East Side", "Bushwick", "Astoria", "South Bronx", "Chelsea", "Flatbush")),
    City("Los Angeles", "US", "North America", 34.0522, -118.2437, 9.0, 7, -8, "en_US",
         ("Downtown", "Hollywood", "Koreatown", "Boyle Heights", "Venice", "Westlake", "Skid Row")),
    City("Chicago", "US", "North America", 41.8781, -87.6298, 6.0, 6, -6, "en_US",
         ("The Loop", "Englewood", "Wicker Park", "Pilsen", "Austin", "Uptown", "Hyde Park")),
    City("Toronto", "CA", "North America", 43.6532, -79.3832, 5.0, 3, -5, "en_CA",
         ("Downtown Yonge", "Kensington Market", "Regent Park", "Parkdale", "Scarborough Village")),
    City("Mexico City", "MX", "North America", 19.4326, -99.1332, 7.0, 7, -6, "es_MX",
         ("Centro Histórico", "Tepito", "Roma Norte", "Condesa", "Iztapalapa", "Doctores", "Polanco")),
    City("São Paulo", "BR", "South America", -23.5505, -46.6333, 8.0, 8, -3, "pt_BR",
         ("Sé", "República", "Brás", "Pinheiros", "Capão Redondo", "Liberdade", "Bela Vista")),
    City("Rio de Janeiro", "BR", "South America", -22.9068, -43.1729, 6.0, 5, -3, "pt_BR",
         ("Copacabana", "Centro", "Lapa", "Tijuca", "Maré", "Botafogo")),
    City("Buenos Aires", "AR", "South America", -34.6037, -58.3816, 6.0, 4, -3, "es_AR",
         ("San Telmo", "La Boca", "Palermo", "Constitución", "Once", "Recoleta")),
    City("Bogotá", "CO", "South America", 4.7110, -74.0721, 6.0, 4, -5, "es_CO",
         ("La Candelaria", "Chapinero", "Kennedy", "Santa Fe", "Usaquén", "Los Mártires")),
    City("London", "GB", "Europe", 51.5074, -0.1278, 7.0, 8, 0, "en_GB",
         ("Soho", "Camden Town", "Brixton", "Hackney", "Peckham", "Westminster", "Tottenham", "Shoreditch")),
    City("Paris", "FR", "Europe", 48.8566, 2.3522, 4.0, 6, 1, "fr_FR",
         ("Châtelet-Les Halles", "Belleville", "Montmartre", "Barbès", "Le Marais", "Gare du Nord")),
    City("Berlin", "DE", "Europe", 52.5200, 13.4050, 6.0, 5, 1, "de_DE",
         ("Alexanderplatz", "Kreuzberg", "Neukölln", "Friedrichshain", "Wedding", "Mitte")),
    City("Madrid", "ES", "Europe", 40.4168, -3.7038, 4.5, 4, 1, "es_ES",
         ("Sol", "Lavapiés", "Malasaña", "Chueca", "Vallecas", "Tetuán")),
    City("Lagos", "NG", "Africa", 6.5244, 3.3792, 7.0, 6, 1, "en_NG",
         ("Lagos Island", "Ikeja", "Surulere", "Yaba", "Oshodi", "Mushin")),
    City("Nairobi", "KE", "Africa", -1.2921, 36.8219, 5.0, 5, 3, "en_KE",
         ("CBD", "Eastleigh", "Kibera", "Westlands", "Kasarani", "Mathare")),
    City("Johannesburg", "ZA", "Africa", -26.2041, 28.0473, 7.0, 5, 2, None,
         ("Hillbrow", "Braamfontein", "Soweto", "Yeoville", "Rosebank", "Berea"), "{n} {word} Street"),
    City("Cairo", "EG", "Africa", 30.0444, 31.2357, 7.0, 5, 2, None,
         ("Downtown", "Tahrir", "Shubra", "Imbaba", "Nasr City", "Zamalek"), "{word} Street"),
    City("Mumbai", "IN", "Asia", 19.0760, 72.8777, 6.0, 7, 5.5, "en_IN",
         ("Colaba", "Dharavi", "Andheri", "Bandra", "Kurla", "Dadar")),
    City("Delhi", "IN", "Asia", 28.7041, 77.1025, 8.0, 6, 5.5, "en_IN",
         ("Connaught Place", "Chandni Chowk", "Paharganj", "Karol Bagh", "Saket", "Lajpat Nagar")),
    City("Tokyo", "JP", "Asia", 35.6762, 139.6503, 8.0, 6, 9, None,
         ("Shinjuku", "Shibuya", "Ikebukuro", "Roppongi", "Ueno", "Kabukichō"), "{district} {n}-chōme"),
    City("Seoul", "KR", "Asia", 37.5665, 126.9780, 6.5, 4, 9, None,
         ("Gangnam", "Itaewon", "Hongdae", "Jongno", "Myeongdong", "Yeongdeungpo"), "{district}-ro {n}-gil"),
    City("Manila", "PH", "Asia", 14.5995, 120.9842, 5.0, 4, 8, "en_PH",
         ("Tondo", "Ermita", "Quiapo", "Malate", "Sampaloc", "Binondo")),
    City("Jakarta", "ID", "Asia", -6.2088, 106.8456, 7.0, 5, 7, "id_ID",
         ("Menteng", "Tanah Abang", "Glodok", "Kemang", "Senen", "Kota Tua")),
    City("Sydney", "AU", "Oceania", -33.8688, 151.2093, 7.0, 4, 10, "en_AU",
         ("Kings Cross", "Redfern", "Parramatta", "Bondi", "Surry Hills", "Haymarket")),
    City("Melbourne", "AU", "Oceania", -37.8136, 144.9631, 6.0, 3, 10, "en_AU",
         ("CBD", "St Kilda", "Footscray", "Fitzroy", "Dandenong", "Collingwood")),
)

# Words for the cities whose street names faker does not give in Latin letters.
STREET_WORDS = ("Market", "Station", "Bridge", "Nile", "Garden", "Church", "Mill", "Harbour", "Temple", "Park",
                "King", "Republic", "Victoria", "Mandela", "Union", "Canal")

# Relative frequency of each local hour (0..23), by rhythm.
HOURLY_PROFILES: dict[str, tuple[float, ...]] = {
    # Street theft: commuters and shoppers; peaks at lunch and the evening rush.
    "daytime": (1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3, 3.5, 4, 5, 5, 4.5, 4.5, 5, 6, 6.5, 6, 5, 4, 3, 2),
    # Burglary: empty homes by day, a second peak late at night.
    "homes_empty": (2, 2.5, 3, 2.5, 1.5, 1, 1, 1.5, 3, 4, 4.5, 4.5, 4, 4, 4.5, 4, 3, 2.5, 2, 2, 2, 2, 2, 2),
    # Violence and nightlife: evenings and after midnight, quiet mornings.
    "night": (7, 7, 6, 5, 3, 1.5, 0.8, 0.6, 0.6, 0.7, 0.8, 1, 1.2, 1.3, 1.5, 1.8, 2.2, 2.8, 3.5, 4.5, 5.5, 6.5, 7, 7.5),
    # Fraud and scams: office hours.
    "office": (0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.6, 1.5, 4, 6, 7, 7, 6, 6.5, 7, 6.5, 5.5, 4, 2.5, 1.5, 1, 0.8, 0.5, 0.4),
}


@dataclass(frozen=True)
class CrimeType:
    """A crime type: its slug, share of reports, base severity (1-5), daily rhythm, chance that a weapon is
    involved, the weapons seen, and the usual number of victims (``victims``: weights of 0, 1, 2, 3)."""

    slug: str
    label: str
    weight: float
    severity: int
    profile: str
    weapon_rate: float
    weapons: tuple[str, ...]
    victims: tuple[float, float, float, float]


CRIME_TYPES: tuple[CrimeType, ...] = (
    CrimeType("theft", "Theft", 28, 2, "daytime", 0.01, ("knife",), (0.05, 0.88, 0.06, 0.01)),
    CrimeType("burglary", "Burglary", 11, 3, "homes_empty", 0.05, ("crowbar", "knife"), (0.3, 0.6, 0.08, 0.02)),
    CrimeType("vandalism", "Vandalism", 10, 1, "night", 0.0, (), (0.7, 0.28, 0.02, 0.0)),
    CrimeType("assault", "Assault", 10, 4, "night", 0.3, ("knife", "bottle", "baseball bat"),
              (0.0, 0.75, 0.2, 0.05)),
    CrimeType("vehicle_theft", "Vehicle theft", 8, 3, "night", 0.03, ("screwdriver",), (0.1, 0.85, 0.05, 0.0)),
    CrimeType("robbery", "Robbery", 8, 4, "night", 0.55, ("knife", "handgun", "machete"), (0.0, 0.8, 0.17, 0.03)),
    CrimeType("harassment", "Harassment", 7, 2, "night", 0.02, ("knife",), (0.0, 0.85, 0.13, 0.02)),
    CrimeType("drug_activity", "Drug activity", 6, 2, "night", 0.08, ("knife", "handgun"), (0.9, 0.1, 0.0, 0.0)),
    CrimeType("fraud", "Fraud", 5, 2, "office", 0.0, (), (0.0, 0.9, 0.08, 0.02)),
    CrimeType("suspicious_activity", "Suspicious activity", 5, 1, "night", 0.02, ("knife",), (0.95, 0.05, 0, 0)),
    CrimeType("shooting", "Shooting", 2, 5, "night", 1.0, ("handgun", "rifle"), (0.3, 0.45, 0.18, 0.07)),
)

# Report texts by crime type. Slots: {place} {item} {vehicle} {suspect} {direction} {when} {weapon}.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "theft": (
        "Someone snatched my {item} outside {place} {when}. {suspect} ran off {direction}.",
        "Pickpocket working the crowd near {place} {when}. Lost my {item}; {suspect} was seen leaving {direction}.",
        "Saw {suspect} grab a {item} from a café table at {place} and run {direction}.",
        "My {item} was stolen from a parked bike at {place} {when}. Nobody saw who took it.",
        "Bag thief on the platform at {place} {when}. Took a {item} and jumped on a train.",
    ),
    "burglary": (
        "Came home to find the door forced at {place}. A {item} and cash are missing. Happened {when}.",
        "Neighbour's ground-floor window smashed at {place} {when}; {suspect} climbed out carrying a {item}.",
        "Shop on {place} broken into {when}. Shutter pried open, till emptied.",
        "Heard glass breaking next door at {place} {when}. {suspect} left {direction} with a {item}.",
    ),
    "vandalism": (
        "Group spray-painting walls and breaking bottles at {place} {when}.",
        "Bus shelter glass smashed at {place} {when}. Shards all over the pavement.",
        "Car windows smashed along {place} {when}, at least three cars hit.",
        "Someone set fire to the bins behind {place} {when}. Fire is out now.",
    ),
    "assault": (
        "Fight outside a bar at {place} {when}. One man hit with a {weapon}, bleeding from the head.",
        "Woman punched by {suspect} near {place} {when}. He ran {direction}.",
        "Two men attacked a delivery rider at {place} {when}. Rider hurt, ambulance called.",
        "Brawl spilled into the street at {place} {when}; {suspect} was swinging a {weapon}.",
    ),
    "vehicle_theft": (
        "My car was stolen from {place} {when}. It is {vehicle}.",
        "Saw {suspect} break into {vehicle} at {place} {when} and drive off {direction}.",
        "Motorbike taken from outside {place} {when}; the lock was cut.",
        "Catalytic converter cut off {vehicle} parked at {place} {when}.",
    ),
    "robbery": (
        "Robbed at {weapon} point near {place} {when}. {suspect} took my {item} and fled {direction}.",
        "Two men on a scooter threatened a woman with a {weapon} at {place} {when} and took her {item}.",
        "Corner shop at {place} held up {when}. {suspect} had a {weapon}, took the cash and ran {direction}.",
        "Mugged by {suspect} at {place} {when}. He showed a {weapon} and demanded my {item}.",
    ),
    "harassment": (
        "{suspect} following women and shouting abuse near {place} {when}.",
        "Man exposing himself on the path at {place} {when}. Left {direction}.",
        "Group harassing passers-by outside {place} {when}, blocking the entrance.",
    ),
    "drug_activity": (
        "Open drug dealing at {place} {when}. {suspect} handing small packets to cars that stop.",
        "Needles and people using in the stairwell at {place} {when}.",
        "Steady traffic of buyers at {place} {when}; lookout standing on the corner.",
    ),
    "fraud": (
        "Card skimmer found on the cash machine at {place} {when}.",
        "Fake ticket sellers at {place} {when} taking money from tourists.",
        "Someone posing as a bank officer at {place} {when} asked people for their PINs.",
    ),
    "suspicious_activity": (
        "{suspect} trying car door handles along {place} {when}.",
        "Unattended bag left by {suspect} at {place} {when}. Staff have been told.",
        "Person filming house entrances on {place} {when} and writing things down.",
    ),
    "shooting": (
        "Several gunshots heard at {place} {when}. People running {direction}.",
        "Shots fired from {vehicle} at {place} {when}. At least one person down.",
        "Heard shots near {place} {when}; {suspect} seen running {direction} holding a {weapon}.",
    ),
}

ITEMS = ("phone", "wallet", "handbag", "laptop", "backpack", "purse", "tablet", "camera", "watch", "bicycle",
         "gold chain", "shopping bags", "headphones", "passport", "suitcase")
VEHICLES = ("a silver sedan", "a black SUV", "a white van", "a red hatchback", "a blue pickup", "a grey minivan",
            "a black motorbike", "a green taxi", "a dark-coloured saloon", "an unmarked delivery van")
_PEOPLE = ("a teenage boy", "a teenage girl", "a young man", "a young woman", "a young man", "a middle-aged man",
           "a middle-aged woman", "an older man", "a tall man", "a short man")
_CLOTHES = ("in a black hoodie", "in a red jacket", "wearing a grey tracksuit", "in a baseball cap",
            "with a backpack", "in a white T-shirt", "in a dark coat", "wearing a face mask", "in a yellow vest")
SUSPECTS = tuple(f"{p} {c}" for p in _PEOPLE for c in _CLOTHES)
DIRECTIONS = ("towards the station", "north", "south", "east", "west", "towards the main road", "into the park",
              "down an alley", "towards the market", "on a scooter", "in a waiting car")
CLOSINGS = ("", "", "", " Police have been called.", " No one was badly hurt.", " I have photos.",
            " Please send a patrol.", " This keeps happening here.", " CCTV on the corner may have it.",
            " Ambulance on the way.")
WEAPONS = ("knife", "handgun", "baseball bat", "bottle", "machete", "crowbar", "screwdriver", "rifle")
REPORTER_KINDS = ("victim", "witness", "bystander", "shop_owner", "resident", "security_guard", "anonymous")


def time_phrase(hour: int, minute: int) -> str:
    """A phrase for a local time as a person would write it: ``'around 11 pm'``, ``'just after midnight'``."""
    if hour == 0 and minute < 30:
        return "just after midnight"
    if hour == 12 and minute < 20:
        return "around noon"
    shown = hour % 12 or 12
    half = "am" if hour < 12 else "pm"
    if minute < 15:
        return f"around {shown} {half}"
    if minute < 45:
        return f"at about {shown}:{minute:02d} {half}"
    nxt = (hour + 1) % 24
    return f"shortly before {nxt % 12 or 12} {'am' if nxt < 12 else 'pm'}"
