"""Language-model side of prefjax: the transformer policy, sequence log-probs, sampling.

`model`: `TransformerConfig`, `Transformer`, `init_params`, `init_cache`, sharding rules, parameter and
FLOP counts. `logprobs`: `sequence_logps` (the one place with the next-token shift and the masks),
LD-DPO's `ld_logps`, and `policy_logps` for a model's apply function. `sampling`: jitted batched
generation with the KV cache (`generate`, `SamplingConfig`, `Generation`), the Nash-MD token-level
geometric mixture and fictitious-play sampling over past iterates.

The rest is imported from its module: `data` (datasets and batch iterators), `tokenizer`, `hf_import`,
`loop` (the training loop and optimiser config both trainers share), `train` (offline trainer),
`synthetic` (the synthetic task with an exact oracle), `oracles` and `reward_model` (preference oracles for
sequences), `online` (online and self-play trainers). The runners are in `prefjax.runs.lm_offline` and
`prefjax.runs.lm_online`; `experiments` and `online_experiments`, their old paths, re-export them.
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
from prefjax.lm.sampling import Generation
from prefjax.lm.sampling import generate
from prefjax.lm.sampling import generate_from_iterates
from prefjax.lm.sampling import SamplingConfig
from prefjax.lm.sampling import sequences
