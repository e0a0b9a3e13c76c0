"""Stage 3: general instruction data the user supplies, and dialogues that decline questions outside image quality.

Two file formats are read (both as their authors publish them):

- LLaVA-Instruct: ``[{"image": "000000033471.jpg", "conversations": [{"from": "human", "value": "<image>\\n..."},
  {"from": "gpt", "value": "..."}, ...]}, ...]``. A dialogue is single-turn, so the first human/gpt exchange of each
  conversation is taken (later turns lean on the earlier ones).
- CC-SBU-Aligned: ``{"annotations": [{"image_id": "2", "caption": "..."}, ...]}``, images ``{image_id}.jpg`` in
  ``--instruct-images`` or its ``image/`` sub-folder; the instruction is drawn from :data:`DESCRIBE_REQUESTS`.

Image paths are resolved against ``--instruct-images`` (default: the JSON file's folder) and written absolute.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from vcritic.base.limits import check_input
from vcritic.data.dialogues import DECLINES, Dialogue
from vcritic.errors import VcriticError
from vcritic.readout.prompts import CHAT

# llava_v1_5_mix665k.json, the largest LLaVA instruction file, is 1.0 GiB; json holds several times that in memory.
MAX_INSTRUCT_BYTES = 2 << 30

DESCRIBE_REQUESTS = (
    "Describe this image in detail.",
    "Take a look at this image and describe what you notice.",
    "Please provide a detailed description of the picture.",
    "Could you describe the contents of this image for me?",
)

# Off-topic requests (not about an image's quality); stage 3 pairs them with quality images and one of the polite
# refusals (vcritic.data.dialogues.DECLINES) so the model learns to stay a quality critic rather than answer anything.
OFF_TOPIC = (
    "What is the capital of Australia?",
    "Write a short poem about the sea.",
    "Can you help me with my tax return?",
    "Translate 'good morning' into French.",
    "What is 17 multiplied by 23?",
    "Recommend a good restaurant near me.",
    "Who won the football world cup in 2014?",
    "Write Python code that sorts a list.",
    "What will the weather be like tomorrow?",
    "Tell me a joke about cats.",
    "How do I fix a flat bicycle tyre?",
    "Which stocks should I buy this year?",
)


def _request(path: Path, message: str) -> VcriticError:
    return VcriticError(
        f"{path}: {message}",
        hint="expected LLaVA-Instruct ([{image, conversations}]) or CC-SBU-Aligned ({annotations: [{image_id, "
        "caption}]}) JSON",
    )


def read_instruct(path: Path, images_dir: Path | None) -> tuple[list[Dialogue], list[str]]:
    """Dialogues from a LLaVA-Instruct or CC-SBU-Aligned JSON file; returns them and the missing image paths."""
    check_input(path, MAX_INSTRUCT_BYTES, "an --instruct file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise VcriticError(f"cannot read {path}: {err.strerror}", hint="check the --instruct path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _request(path, f"not valid JSON ({err})") from None
    except RecursionError:
        raise _request(path, "not valid JSON (nested too deeply)") from None
    base = (images_dir or path.parent).expanduser().absolute()
    name = path.stem
    if isinstance(data, list):
        items = _llava(data, path, base, name)
    elif isinstance(data, dict) and isinstance(data.get("annotations"), list):
        items = _cc_sbu(data["annotations"], path, base, name)
    else:
        raise _request(path, "unknown format")
    present, missing = [], []
    for dialogue in items:
        (present if Path(dialogue.images[0]).is_file() else missing).append(dialogue)
    return present, [d.images[0] for d in missing]


def _llava(data: list, path: Path, base: Path, name: str) -> list[Dialogue]:
    dialogues = []
    for number, item in enumerate(data):
        if not isinstance(item, dict) or "image" not in item or not isinstance(item.get("conversations"), list):
            raise _request(path, f"entry {number} has no image and conversations")
        turns = item["conversations"]
        human = next((t for t in turns if isinstance(t, dict) and t.get("from") == "human"), None)
        gpt = next((t for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None)
        if human is None or gpt is None:
            raise _request(path, f"entry {number} has no human and gpt turns")
        instruction = str(human.get("value", "")).replace("<image>", "").strip()
        dialogues.append(
            Dialogue(
                question=CHAT.name,
                task="instruction",
                images=(str(base / str(item["image"])),),
                instruction=instruction,
                answer=str(gpt.get("value", "")).strip(),
                dataset=name,
            )
        )
    return dialogues


def _cc_sbu(annotations: list, path: Path, base: Path, name: str) -> list[Dialogue]:
    folder = base / "image" if (base / "image").is_dir() else base
    dialogues = []
    rng = random.Random(f"cc-sbu:{name}")  # the request wording only; fixed so the file reads the same every time
    for number, item in enumerate(annotations):
        if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
            raise _request(path, f"annotation {number} has no image_id and caption")
        dialogues.append(
            Dialogue(
                question=CHAT.name,
                task="instruction",
                images=(str(folder / f"{item['image_id']}.jpg"),),
                instruction=rng.choice(DESCRIBE_REQUESTS),
                answer=str(item["caption"]).strip(),
                dataset=name,
            )
        )
    return dialogues


def decline_dialogues(images: Sequence[str], n: int, rng: random.Random) -> list[Dialogue]:
    """``n`` off-topic requests about ``images`` (drawn with replacement), each answered with a refusal."""
    if not images:
        return []
    return [
        Dialogue(
            question=CHAT.name,
            task="decline",
            images=(rng.choice(images),),
            instruction=rng.choice(OFF_TOPIC),
            answer=rng.choice(DECLINES),
            dataset="decline",
        )
        for _ in range(n)
    ]
