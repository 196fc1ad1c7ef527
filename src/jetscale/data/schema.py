"""Column names shared by the data layer and its consumers (tokenizers, training, summaries)."""

# Per-particle features in the order of the BBT-Neutron paper's Table 1.
FEATURE_NAMES: tuple[str, ...] = (
    "deta",
    "dphi",
    "log_pt",
    "log_e",
    "log_pt_rel",
    "log_e_rel",
    "delta_r",
    "d0",
    "d0_err",
    "z0",
    "z0_err",
    "charge",
    "is_electron",
    "is_muon",
    "is_charged_kaon",
    "is_charged_pion",
    "is_proton",
    "is_neutral_hadron",
    "is_photon",
)

# Per-particle four-momentum components (GeV), stored beside the features for ParT pair features.
VECTOR_NAMES: tuple[str, ...] = ("px", "py", "pz", "e")

# Per-jet scalar columns of a shard (one row per jet).
JET_COLUMNS: tuple[str, ...] = (
    "jet_id",
    "label",
    "event_id",
    "jet_energy",
    "jet_pt",
    "jet_eta",
    "jet_phi",
    "match_angle",
    "n_particles",
)

# A shard stores per-particle list columns named PARTICLE_PREFIX + feature/vector name.
PARTICLE_PREFIX = "part_"
