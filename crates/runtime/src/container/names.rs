//! Generated container names, `adjective_noun` as Docker makes them.

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble",
    "proud", "quiet", "quirky", "rapid", "serene", "sharp", "stoic", "sturdy", "swift", "tender", "upbeat", "vivid",
    "wise", "witty", "zealous", "bold", "cosmic", "dreamy",
];

const NOUNS: &[&str] = &[
    "albatross",
    "badger",
    "beaver",
    "bison",
    "condor",
    "crane",
    "dolphin",
    "falcon",
    "ferret",
    "gecko",
    "heron",
    "ibis",
    "jaguar",
    "kestrel",
    "lemur",
    "lynx",
    "marmot",
    "narwhal",
    "ocelot",
    "otter",
    "panda",
    "puffin",
    "quokka",
    "raven",
    "salmon",
    "tapir",
    "toucan",
    "walrus",
    "wombat",
    "yak",
];

/// A name not `taken`: a random pair, with a number once the pairs run out.
pub(super) fn generate(taken: impl Fn(&str) -> bool) -> String {
    let mut seed = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut seed);
    }
    let mut n = u64::from_le_bytes(seed);
    for round in 0.. {
        let name = format!("{}_{}", ADJECTIVES[(n % 30) as usize], NOUNS[((n / 30) % 30) as usize]);
        let name = if round < 50 { name } else { format!("{name}{round}") };
        if !taken(&name) {
            return name;
        }
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    }
    unreachable!("a free name is found")
}
