"""The search methods of --method, each a methods.method.Method: DARTS (darts.py: first order and the
paper's second order), β-DARTS (beta_darts.py), DARTS- (darts_minus.py), SDARTS-RS and SDARTS-ADV
(sdarts.py), DrNAS (drnas.py, its Gamma numerics in gamma.py), GDAS (gdas.py) and random search
with weight sharing (rsws.py); cost.py is --cost-weight's penalty, which the alpha-stepping methods take."""
from methods.beta_darts import BetaDarts
from methods.darts import Darts
from methods.darts_minus import DartsMinus
from methods.drnas import Drnas
from methods.gdas import Gdas
from methods.rsws import Rsws
from methods.sdarts import SdartsAdv, SdartsRs

METHODS = {method.name: method for method in (Darts, BetaDarts, DartsMinus, SdartsRs, SdartsAdv, Drnas, Gdas, Rsws)}
NAMES = tuple(METHODS)
DEFAULT = Darts.name
OPTIONS = {flag: default for method in METHODS.values() for flag, default in method.options.items()}


def get(name, **values):
    """The method ``name`` with the search's ``values`` (seed, second_order, eta, weight_decay,
    momentum, nesterov) and its own options among them."""
    return METHODS[name](**values)
