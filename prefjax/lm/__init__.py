"""Language-model side of prefjax: the transformer policy and sequence log-probs.

`model`: `TransformerConfig`, `Transformer`, `init_params`, `init_cache`, sharding rules, parameter and
FLOP counts. `logprobs`: `sequence_logps` (the one place with the next-token shift and the masks),
LD-DPO's `ld_logps`, and `policy_logps` for a model's apply function.
"""

from prefjax.lm.logprobs import ld_logps
from prefjax.lm.logprobs import policy_logps
from prefjax.lm.logprobs import policy_token_logps
from prefjax.lm.logprobs import sequence_logps
from prefjax.lm.logprobs import SequenceLogps
from prefjax.lm.logprobs import token_logps
from prefjax.lm.model import flops_per_token
from prefjax.lm.model import init_cache
from prefjax.lm.model import init_params
from prefjax.lm.model import KVCache
from prefjax.lm.model import LOGICAL_AXIS_RULES
from prefjax.lm.model import param_count
from prefjax.lm.model import param_shardings
from prefjax.lm.model import Transformer
from prefjax.lm.model import TransformerConfig
