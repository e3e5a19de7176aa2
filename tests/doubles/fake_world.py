"""A test double for the toy-world model: its internals are known by construction.

Used by the ravel/ioi tests: it exposes `to_tokens` and `run_with_hooks` (the only bridge
methods saebench.interventions uses) and solves IOI and the city facts exactly, through one
hook whose activation basis is a set of labelled one-hot blocks:

  [IO name | S name | order (ABBA, BABA) | country | continent | language]

At a city token the activation holds the city's three attribute one-hots; at the final token of
an IOI prompt it holds e_IO + e_S + e_order (IO and S in separate name blocks). The readout
after the hook answers a fact prompt from the (possibly patched) activation at the city token,
and an IOI prompt from the final token's IO, S and order blocks (see _name_scores). So the ideal
dictionary is the identity on these blocks.
"""

from __future__ import annotations

import torch

HOOK = "blocks.0.hook_resid_pre"
SCALE = 10.0


class FakeWorldBridge:
    def __init__(self, world, tokenizer):
        self.world, self.tokenizer = world, tokenizer
        self.bos = tokenizer.convert_tokens_to_ids("<bos>")
        self.vocab_size = len(tokenizer.get_vocab())
        self.names = list(world.names)
        facts = world.variables()["facts"]
        self.blocks = {"io": self.names, "s": self.names, "order": ["ABBA", "BABA"]}
        for attribute in world.attributes:
            self.blocks[attribute] = facts[attribute]
        self.offsets, offset = {}, 0
        for block, values in self.blocks.items():
            self.offsets[block] = offset
            offset += len(values)
        self.d_model = offset
        word_id = lambda w: tokenizer.encode(" " + w, add_special_tokens=False)[0]
        self.name_ids = {word_id(n): i for i, n in enumerate(self.names)}
        self.city_ids = {word_id(c["city"]): c for c in world.cities}
        self.block_token_ids = {
            block: torch.tensor([word_id(v.split()[0]) for v in values])
            for block, values in self.blocks.items()
        }
        self.keyword_ids = {
            word_id("country"): "country",
            word_id("continent"): "continent",
            word_id("speak"): "language",
        }
        self.hook_dict = {HOOK: None}
        # Token id -> activation vector at that token (city attribute one-hots, else zero).
        self.is_name = torch.zeros(self.vocab_size, dtype=torch.bool)
        self.is_name[list(self.name_ids)] = True
        self.token_table = torch.zeros(self.vocab_size, self.d_model)
        for tok, city in self.city_ids.items():
            for attribute in world.attributes:
                self.token_table[tok, self.index(attribute, city[attribute])] = 1.0

    def index(self, block, value):
        return self.offsets[block] + self.blocks[block].index(value)

    def to_tokens(self, text):
        return torch.tensor([[self.bos] + self.tokenizer.encode(text, add_special_tokens=False)])

    def _acts(self, tokens):
        acts = self.token_table[tokens]
        has_names = self.is_name[tokens].sum(1) >= 2
        for row in has_names.nonzero()[:, 0].tolist():
            seq = tokens[row].tolist()
            names = [self.names[self.name_ids[t]] for t in seq if t in self.name_ids]
            if len(set(names)) >= 2:
                once = [n for n in names if names.count(n) == 1]
                twice = [n for n in names if names.count(n) > 1]
                if once and twice:
                    acts[row, -1, self.index("io", once[0])] = 1.0
                    acts[row, -1, self.index("s", twice[0])] = 1.0
                    order = "ABBA" if names[0] == once[0] else "BABA"
                    acts[row, -1, self.index("order", order)] = 1.0
        return acts

    def _readout(self, tokens, acts):
        rows = []  # only the final position; out of place, so it can carry a gradient
        for row, seq in enumerate(tokens.tolist()):
            asked = [self.keyword_ids[t] for t in seq if t in self.keyword_ids]
            city_pos = [p for p, t in enumerate(seq) if t in self.city_ids]
            if asked and city_pos:
                block, source = asked[-1], acts[row, city_pos[0]]
                start = self.offsets[block]
                values = source[start : start + len(self.blocks[block])] * SCALE
            else:
                block, values = "io", self._name_scores(seq, acts[row, -1]) * SCALE
            rows.append(
                torch.zeros(self.vocab_size, dtype=values.dtype).scatter_reduce(
                    0, self.block_token_ids[block], values, "amax", include_self=False
                )
            )
        return torch.stack(rows)[:, None]

    def _name_scores(self, seq, final):
        """Per name: 3·IO + 1·(at the position the order block names) + 1·(in the prompt)
        − 5·S, read from the final token's blocks. Each of IO, S and the context moves the
        answer on its own; a Pos-only edit loses to the IO and S blocks (see tests/test_ioi)."""
        block = lambda name: final[self.offsets[name] : self.offsets[name] + len(self.names)]
        order = final[self.offsets["order"] : self.offsets["order"] + 2]
        in_prompt = torch.zeros(len(self.names), dtype=final.dtype)
        first_two: list[int] = []
        for t in seq:
            if t in self.name_ids and self.name_ids[t] not in first_two:
                first_two.append(self.name_ids[t])
        in_prompt[first_two] = 1.0
        at_position = torch.zeros(len(self.names), dtype=final.dtype)
        for slot, index in enumerate(first_two[:2]):
            at_position[index] = order[slot]
        return 3 * block("io") + at_position + in_prompt - 5 * block("s")

    def run_with_hooks(self, tokens, fwd_hooks=(), return_type="logits"):
        if return_type != "logits":
            raise ValueError(f"the fake bridge returns logits only, not {return_type!r}")
        acts = self._acts(tokens.cpu())
        for name, fn in fwd_hooks:
            if name != HOOK:
                raise KeyError(f"fake bridge has only the hook {HOOK}, got {name}")
            result = fn(acts, None)
            acts = acts if result is None else result
        return self._readout(tokens.cpu(), acts.cpu())


def planted_sae(d):
    """The ideal dictionary for the fake: identity encoder/decoder, no biases."""
    from saebench.sae import SAE

    sae = SAE(d, d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
    return sae.eval()


def random_sae(d, d_sae, seed=0):
    """Random unit-norm decoder rows with the tied encoder W_enc = W_decᵀ."""
    from saebench.sae import SAE

    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(d_sae, d, generator=generator)
    directions /= directions.norm(dim=-1, keepdim=True)
    sae = SAE(d, d_sae)
    with torch.no_grad():
        sae.W_dec.copy_(directions)
        sae.W_enc.copy_(directions.T)
    return sae.eval()
