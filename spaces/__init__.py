"""The search spaces of --search-space, each a spaces.space.Space: DARTS's convolutional cells
(darts_cnn), NAS-Bench-201's (nas_bench_201) and DARTS's recurrent cell (darts_rnn, the space of
the text corpora)."""
from spaces.darts_cnn import DartsCnn
from spaces.darts_rnn import DartsRnn
from spaces.nas_bench_201 import NasBench201

SPACES = {space.name: space for space in (DartsCnn, NasBench201, DartsRnn)}
RECURRENT = DartsRnn.name
NAMES = tuple(SPACES)
DEFAULT = DartsCnn.name


def get(name, **flags):
    """The space ``name`` configured by the flags it takes (num_nodes, benchmark_table) among ``flags``."""
    space = SPACES[name]
    return space(**{k: v for k, v in flags.items() if k in space.options and v is not None})


def named_by(value):
    """The name of the space whose arch ``value`` (a JSON object, or a name or string) is, or None:
    a JSON object names its space (the seed's DARTS format says nothing: DARTS); a string is the
    space's that claims it."""
    if isinstance(value, dict):
        name = value.get('search_space', DEFAULT)
        return name if name in SPACES else None
    return next((name for name, space in SPACES.items() if space.claims(value)), None)
