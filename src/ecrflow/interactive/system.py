"""A trained system, held in memory, answering a conversation: the dialogue so far (free text, user and
system turns) in, a reply with its ranked items out. The same object serves ``ecrflow chat``, the
OpenAI-compatible server and the simulated-user evaluation, so all three talk to exactly what the workflow
trained and measured.

One turn, for a history ending with the user's message (paper Sec. 3):

1. every turn's entities are linked (:mod:`ecrflow.interactive.linking`) and every user turn's emotions are
   read by the trained classifier (none where the run has none: its dialogues carried their labels), kept
   with the rule of the data stage (``emotion.threshold``, the top-1 fallback); a system turn's entities get
   the emotions of the user's next turn, as in the processed training data;
2. the UniCRS conversation module writes u_r (a template with ``<movie>``);
3. the stage-2 variant ranks the items from the context (with u_r where the variant was trained with it);
4. the reply: UniCRS fills ``<movie>`` with its top item; ECR (and ECR with the RL generator) continues
   u_r with the generator's u_e, prompted with the top item's knowledge (the paper's u_r ⊕ u_e).

The manifest (``results/<run>/interactive/system.json``, rule ``chat_system``) names every file and setting,
so that nothing here re-derives a path of the workflow.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..constants import MOVIE_TOKEN, RECOMMENDER, SEEKER
from ..io import read_json
from .linking import EntityLinker

log = logging.getLogger(__name__)

ROLE_OF = {"user": SEEKER, "assistant": RECOMMENDER}
MODEL_SYSTEMS = ("unicrs", "ecr", "ecr_rl")  # the systems built from the run's models (the LLM baseline aside)


@dataclass
class Reply:
    text: str
    items: list[dict]  # [{"id", "name", "score"}], best first
    entities: list[list[dict]]  # per turn of the history, the linked entities
    emotions: list[list[list]]  # per turn, the (label, p) kept for it
    u_r: str = ""
    u_e: str = ""
    system: str = ""

    def to_json(self) -> dict:
        return {"system": self.system, "reply": self.text, "u_r": self.u_r, "u_e": self.u_e, "items": self.items,
                "entities": self.entities, "emotions": self.emotions}


@dataclass
class DialogueState:
    """A history in the form of a processed rec row (ecrflow.data.process): texts with roles, entities in
    order with the emotions attached to each."""

    context: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    entity: list[int] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    probs: list[list[float]] = field(default_factory=list)
    links: list[list[dict]] = field(default_factory=list)
    emotions: list[list[list]] = field(default_factory=list)


def check_history(messages) -> list[tuple[str, str]]:
    """(role, text) pairs from OpenAI-style messages, system messages dropped; raises ValueError naming what
    is wrong (the server answers it with a 400)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"messages[{i}] must be an object with 'role' and 'content'")
        role, content = m["role"], m["content"]
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}].role is {role!r}; expected system, user or assistant")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")
        if role != "system":
            out.append((role, content))
    if not out or out[-1][0] != "user":
        raise ValueError("the last message must be the user's")
    return out


class ChatSystem:
    """The run's systems (``unicrs``, ``ecr``, ``ecr_rl``) over one set of loaded models; thread-safe (one
    forward at a time: a CPU has no spare cores for two)."""

    def __init__(self, manifest_path, systems: list[str] | None = None):
        import torch  # noqa: F401  (imported here: the manifest readers above need no torch)

        self.manifest = read_json(manifest_path)
        m = self.manifest
        self.available = [s for s in MODEL_SYSTEMS if s in m["systems"]]
        self.systems = systems or self.available
        unknown = [s for s in self.systems if s not in self.available]
        if unknown:
            raise ValueError(f"{manifest_path}: no system {', '.join(unknown)} in this run "
                             f"(it has {', '.join(self.available)})")
        self.lock = threading.Lock()
        self._emotion_cache: dict[str, tuple] = {}
        self.linker = EntityLinker.from_files(m["entity2id"], m["items"])
        self._load_shared()
        self.recommenders = {}
        for name in self.systems:
            variant = m["systems"][name]["recommender"]
            if variant not in self.recommenders:
                self.recommenders[variant] = self._load_recommender(variant)
        self.generators = {}
        if any(m["systems"][name].get("generator") for name in self.systems):
            self._load_knowledge()
        for name in self.systems:
            gen = m["systems"][name].get("generator")
            if gen and gen not in self.generators:
                self.generators[gen] = self._load_generator(gen)

    # -- loading ------------------------------------------------------------------------------------------
    def _load_shared(self) -> None:
        from ..config import section as typed
        from ..data.turns import EmotionRule
        from ..recommend.training import (BaseModels, ConversationSettings, Variant, build_model, load_setup,
                                          make_collator, text_sides)
        from ..train import make_accelerator

        m = self.manifest
        self.acc = make_accelerator(m["precision"])
        self.setup = load_setup(BaseModels(**m["models"]), m["kg"], m["precision"])
        self.items = read_json(m["item_ids"])
        self.rule = EmotionRule(**m["emotion"])
        conv = typed(ConversationSettings, m["conversation"]["section"], "conversation")
        self.conv_section = conv
        self.conv_sides = text_sides(self.setup, conv)
        self.conv = build_model(self.setup, conv, Variant(emotions=False, global_entities=False),
                                n_prefix=conv.n_prefix_conv, fusion="token", init=m["conversation"]["model"])
        self.conv.to(self.acc.device).eval()
        self.conv_collate = make_collator(self.setup, conv, None, left_pad_lm=True)
        self.classifier = None
        if m.get("classifier"):
            from transformers import AutoModelForSequenceClassification

            from ..emotion.classifier import META
            from ..generate.generator import load_tokenizer

            meta = read_json(Path(m["classifier"]) / META)
            self.classifier = (AutoModelForSequenceClassification.from_pretrained(m["classifier"]).eval(),
                               load_tokenizer(m["classifier"]), meta)

    def _load_recommender(self, variant: str) -> dict:
        from ..config import section as typed
        from ..recommend.training import (RecommendTraining, Variant, build_model, cooccurrence, kg_neighbourhood,
                                          make_collator, text_sides)

        spec = self.manifest["recommenders"][variant]
        section = typed(RecommendTraining, spec["section"], f"variants.recommend.{variant}")
        flags = typed(Variant, spec["flags"], f"variants.recommend.{variant}")
        model = build_model(self.setup, section, flags, n_prefix=section.n_prefix_rec, fusion="entity",
                            init=spec["model"], item_ids=self.items)
        model.to(self.acc.device).eval()
        co = cooccurrence(flags, spec.get("matrix"), spec.get("contributions"))
        collate = make_collator(self.setup, section, co, kg=kg_neighbourhood(flags, self.setup, self.items))
        return {"model": model, "section": section, "flags": flags, "collate": collate,
                "sides": text_sides(self.setup, section)}

    def _load_knowledge(self) -> None:
        """What the generators' prompts read: movie names, one-hop KG triples, the movies' entities."""
        import pyarrow.parquet as pq

        from ..generate.examples import KnowledgeOptions, MovieNames
        from ..generate.knowledge import one_hop

        m = self.manifest
        self.names = MovieNames.load(m["items"], m["entity2id"])
        self.neighbours = one_hop(read_json(m["subkg"]), read_json(m["relation2id"]), tuple(m["relations"]))
        self.movie_entities = {r["movie"]: r["entities"] for r in pq.read_table(m["movie_knowledge"]).to_pylist()}
        self.knowledge = KnowledgeOptions.from_config(m["generation"])

    def _load_generator(self, name: str) -> dict:
        from ..generate.generator import load_trained

        spec = self.manifest["generators"][name]
        model, tok, meta = load_trained(spec["model"], merge=True)
        model.to(self.acc.device)
        return {"model": model, "tok": tok, "meta": meta, "section": spec["section"]}

    # -- one turn -----------------------------------------------------------------------------------------
    def _emotions(self, text: str) -> tuple[tuple[str, float], ...]:
        """The classifier's labels of one user message, most probable first (cached per text: a history is
        read again at every turn)."""
        if text not in self._emotion_cache:
            import numpy as np

            from ..emotion.annotate import clean_text
            from ..emotion.classifier import predict

            model, tok, meta = self.classifier
            p = predict(model, tok, [clean_text(text)], max_length=meta["max_length"], batch_size=1)[0]
            order = np.argsort(-p, kind="stable")
            self._emotion_cache[text] = tuple((meta["labels"][i], float(p[i])) for i in order)
        return self._emotion_cache[text]

    def state(self, history: list[tuple[str, str]]) -> DialogueState:
        """The processed form of a history (entities and emotions as process_split builds them)."""
        from ..data.redial import Message
        from ..data.turns import select_emotions

        links = [self.linker.link(text) for _, text in history]
        own = []
        for (role, text), ls in zip(history, links):
            if ROLE_OF[role] == SEEKER and self.classifier is not None:
                msg = Message(sender=0, text=text, entities=(), movies=(), movie_names=(),
                              emotion=self._emotions(text))
                own.append(select_emotions(msg, self.rule, True, bool(ls)))
            else:
                own.append([])
        st = DialogueState()
        for t, ((role, text), ls) in enumerate(zip(history, links)):
            emo = own[t] if ROLE_OF[role] == SEEKER else (own[t + 1] if t + 1 < len(history) else [])
            st.context.append(text)
            st.roles.append(ROLE_OF[role])
            ordered = [x for x in ls if x.kind == "movie"] + [x for x in ls if x.kind != "movie"]
            for link in ordered:  # movies first, then other entities, as a turn's ids in the data
                st.entity.append(link.entity_id)
                st.labels.append([lab for lab, _ in emo])
                st.probs.append([float(p) for _, p in emo])
            st.links.append([x.to_json() for x in ls])
            st.emotions.append([[lab, round(float(p), 3)] for lab, p in own[t]])
        return st

    def respond(self, history: list[tuple[str, str]], system: str = "ecr", top_k: int = 10) -> Reply:
        if system not in self.systems:
            raise ValueError(f"unknown system {system!r}; this server has {', '.join(self.systems)}")
        if not history or history[-1][0] != "user":
            raise ValueError("the last turn must be the user's")
        with self.lock:
            st = self.state(history)
            u_r = self._u_r(st)
            spec = self.manifest["systems"][system]
            items = self._rank(st, u_r, spec["recommender"], top_k)
            top = items[0]["id"] if items else None
            gen = spec.get("generator")
            if gen is None or top is None:
                text = u_r.replace(MOVIE_TOKEN, items[0]["name"]) if items else u_r
                u_e = ""
            else:
                first, u_e = self._u_e(gen, top, u_r, len(history))
                text = f"{first} {u_e}".strip()
        return Reply(text=text, items=items, entities=st.links, emotions=st.emotions, u_r=u_r, u_e=u_e, system=system)

    def _u_r(self, st: DialogueState) -> str:
        import torch

        from ..data.turns import SPEAKER_TAGS, serialise_context
        from ..models.lm import greedy_generate
        from ..recommend.data import Sample

        lm, enc = self.conv_sides
        n = self.conv_section.entity_max_length
        sample = Sample("chat", len(st.context),
                        lm.encode_left([serialise_context(st.context, st.roles, lm.sep) + f"{SPEAKER_TAGS[RECOMMENDER]}:"])[0],
                        enc.encode_left([serialise_context(st.context, st.roles, enc.sep)])[0],
                        st.entity[-n:], st.labels[-n:], st.probs[-n:])
        batch = {k: (v.to(self.acc.device) if torch.is_tensor(v) else v) for k, v in self.conv_collate([sample]).items()}
        tok = self.setup.frozen.lm_tokenizer
        with torch.no_grad(), self.acc.autocast():
            prefix = self.conv.prefix(batch, self.conv.prompt.entity_table())
            new = greedy_generate(self.conv.lm, prefix, batch["lm_ids"], batch["lm_mask"],
                                  max_new_tokens=self.conv_section.max_gen_len, eos_token_id=tok.eos_token_id,
                                  no_repeat_ngram_size=self.conv_section.no_repeat_ngram_size)
        return tok.decode(new[0], skip_special_tokens=False).replace(tok.pad_token, "").strip()

    def _rank(self, st: DialogueState, u_r: str, variant: str, top_k: int) -> list[dict]:
        from ..data.turns import SPEAKER_TAGS, serialise_context
        from ..recommend.data import Sample
        from ..recommend.training import score_samples

        r = self.recommenders[variant]
        lm, enc = r["sides"]
        lm_text = serialise_context(st.context, st.roles, lm.sep)
        enc_text = serialise_context(st.context, st.roles, enc.sep)
        if r["section"].use_resp:  # as rec_samples: a u_r without <movie> is blanked, the tag stays
            tag = f"{SPEAKER_TAGS[RECOMMENDER]}: {u_r if MOVIE_TOKEN in u_r else ''}"
            lm_text, enc_text = lm_text + tag + lm.sep, enc_text + tag + enc.sep
        n = r["section"].entity_max_length
        sample = Sample("chat", len(st.context), lm.encode_left([lm_text])[0], enc.encode_left([enc_text])[0],
                        st.entity[-n:], st.labels[-n:], st.probs[-n:], target=self.items[0])
        s = score_samples(r["model"], [sample], r["collate"], batch_size=1, item_ids=self.items, top_k=top_k,
                          accelerator=self.acc)
        return [{"id": int(i), "name": self.linker.movie_name(int(i)), "score": round(float(v), 4)}
                for i, v in zip(s["top_items"][0], s["top_scores"][0])]

    def _u_e(self, name: str, movie: int, u_r: str, turn: int) -> tuple[str, str]:
        from ..generate.examples import inference_example
        from ..generate.generator import encode, generate
        from ..generate.prompts import prompt_lines, render

        g = self.generators[name]
        k = inference_example("chat", turn, movie, u_r, self.movie_entities.get(movie, []),
                              self.neighbours.get(movie, []), self.names, self.knowledge)
        prompt = render(g["tok"], prompt_lines(k, g["meta"]["knowledge"]), g["meta"]["format"])
        ids, _ = encode(g["tok"], prompt, None, context_max_length=g["meta"]["context_max_length"],
                        resp_max_length=g["meta"]["resp_max_length"])
        with self.acc.autocast():
            new = generate(g["model"], g["tok"], [ids], batch_size=1, max_new_tokens=g["section"]["max_gen_len"],
                           no_repeat_ngram_size=self.manifest["generation"]["no_repeat_ngram_size"],
                           device=self.acc.device)
        return k.first_sentence, g["tok"].decode(new[0], skip_special_tokens=True).strip()
