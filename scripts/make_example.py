"""Regenerate prefkit/examples/ultrafeedback-mini.jsonl: a few dozen preference pairs written for prefkit.

Shape: HuggingFaceH4/ultrafeedback_binarized (family B: `chosen`/`rejected` are whole conversations, with a
redundant `prompt` string, `prompt_id`, and `score_chosen`/`score_rejected` on a 1-10 scale). A few rows are
deliberately bad (a tie, an identical pair, template residue, diverging histories, an empty answer) so the
summary shows every outcome.
"""

import hashlib
import json
from pathlib import Path

PAIRS = [
    (
        "How do I reverse a list in Python?",
        "Use slicing: `items[::-1]` returns a reversed copy, while `items.reverse()` reverses the list in place and returns None.",
        "You can't reverse lists in Python; convert it to a string first.",
        9.0,
        3.0,
    ),
    (
        "What is the capital of Australia?",
        "The capital of Australia is Canberra. Many people guess Sydney, which is the largest city.",
        "The capital of Australia is Sydney.",
        9.5,
        2.0,
    ),
    (
        "Explain what a hash table is in one paragraph.",
        "A hash table stores key-value pairs in an array of buckets. A hash function maps each key to a bucket index, so lookups, inserts and deletes take constant time on average; collisions are handled by chaining or open addressing.",
        "A hash table is a table where you put hashes.",
        8.5,
        3.5,
    ),
    (
        "Give me a haiku about autumn rain.",
        "Cold rain on red leaves\nthe gutter hums a low song\nsummer washes out",
        "Autumn rain is wet. It falls down from the sky. The end.",
        8.0,
        4.0,
    ),
    (
        "Why is the sky blue?",
        "Sunlight is scattered by molecules in the air, and shorter (blue) wavelengths scatter much more than longer (red) ones (Rayleigh scattering), so blue light reaches your eyes from every direction of the sky.",
        "Because it reflects the ocean.",
        9.0,
        2.5,
    ),
    (
        "Convert 72 degrees Fahrenheit to Celsius.",
        "(72 - 32) × 5/9 = 22.2 °C.",
        "72 °F is about 40 °C.",
        9.0,
        1.0,
    ),
    (
        "Write a SQL query that counts orders per customer.",
        "SELECT customer_id, COUNT(*) AS orders\nFROM orders\nGROUP BY customer_id\nORDER BY orders DESC;",
        "SELECT COUNT(customer_id) FROM customers;",
        8.5,
        4.0,
    ),
    (
        "What does the `git rebase` command do?",
        "`git rebase` moves your branch's commits onto a new base commit, replaying them one by one. It rewrites history, so avoid rebasing commits others have already pulled.",
        "It deletes your branch and makes a new one.",
        8.0,
        2.0,
    ),
    (
        "Suggest three names for a bakery that specialises in sourdough.",
        "1. Wild Rise\n2. The Starter Jar\n3. Crumb & Crust",
        "Bakery, Bread Shop, Store.",
        7.5,
        3.0,
    ),
    (
        "Is it safe to eat raw cookie dough?",
        "It's best avoided: raw flour can carry E. coli and raw eggs can carry Salmonella. Doughs made with heat-treated flour and no eggs are sold as safe to eat raw.",
        "Yes, it's always completely safe.",
        9.0,
        2.0,
    ),
    (
        "Summarise the plot of Romeo and Juliet in two sentences.",
        "Two young lovers from feuding families in Verona marry in secret. A chain of misunderstandings leads both to take their own lives, which finally reconciles their families.",
        "Romeo and Juliet is a play by Shakespeare that is about love and has many scenes in it and people in it.",
        8.5,
        4.5,
    ),
    (
        "How many bytes are in a kilobyte?",
        "By the SI definition a kilobyte is 1,000 bytes; the binary unit of 1,024 bytes is a kibibyte (KiB), though many tools still say KB for it.",
        "There are 100 bytes in a kilobyte.",
        8.0,
        1.5,
    ),
    (
        "What is the difference between a process and a thread?",
        "A process has its own memory space; threads live inside a process and share its memory. Threads are cheaper to create and switch between, but shared memory means they need synchronisation.",
        "They are the same thing.",
        9.0,
        2.0,
    ),
    (
        "Translate 'good morning' into Spanish and French.",
        "Spanish: «buenos días». French: «bonjour».",
        "Spanish: bonjour. French: buenos días.",
        9.0,
        1.0,
    ),
    (
        "Give me a tip for staying focused while studying.",
        "Work in 25-minute blocks with a 5-minute break (the Pomodoro technique) and keep your phone in another room during each block.",
        "Just focus harder.",
        8.0,
        3.0,
    ),
    (
        "What is a prime number?",
        "A prime is a whole number greater than 1 whose only divisors are 1 and itself, like 2, 3, 5, 7 and 11.",
        "A prime number is any odd number.",
        9.0,
        2.0,
    ),
    (
        "Write a Python function that checks whether a string is a palindrome.",
        "def is_palindrome(s: str) -> bool:\n    cleaned = [c.lower() for c in s if c.isalnum()]\n    return cleaned == cleaned[::-1]",
        "def is_palindrome(s):\n    return s == s.reverse()",
        8.5,
        3.0,
    ),
    (
        "How often should I water a cactus?",
        "Water thoroughly only when the soil has dried out completely: about every 2-3 weeks in spring and summer, and once a month or less in winter.",
        "Every day, cacti love water.",
        8.5,
        2.0,
    ),
    (
        "What causes the seasons on Earth?",
        "Earth's axis is tilted about 23.4°, so as it orbits the Sun each hemisphere alternately leans toward the Sun (summer: longer days, more direct light) and away from it (winter).",
        "The Earth is closer to the Sun in summer.",
        9.0,
        3.0,
    ),
    (
        "Recommend a beginner-friendly board game for four players.",
        "Ticket to Ride: the rules take ten minutes to learn, turns are quick, and it stays fun for mixed ages.",
        "Chess.",
        7.5,
        3.5,
    ),
    (
        "Explain recursion to a ten-year-old.",
        "Recursion is when you solve a big problem by solving a smaller copy of the same problem, like opening a set of nesting dolls until you reach the smallest one, then putting them back together.",
        "Recursion is a function that calls itself recursively using recursion.",
        8.5,
        3.0,
    ),
    (
        "What is the boiling point of water at sea level?",
        "100 °C (212 °F) at standard sea-level pressure.",
        "50 °C.",
        9.0,
        1.0,
    ),
    (
        "List two benefits of regular exercise.",
        "It strengthens the heart and lungs, and it improves mood and sleep.",
        "It makes you tired.",
        8.0,
        3.0,
    ),
    (
        "How do I make a cup of pour-over coffee?",
        "Rinse a paper filter, add about 15 g of medium-fine coffee, bloom with 30 g of water just off the boil for 30 seconds, then pour slowly to 250 g total over about 3 minutes.",
        "Put coffee in a cup and add cold water.",
        8.5,
        2.0,
    ),
    (
        "What is the time complexity of binary search?",
        "O(log n): each comparison halves the remaining range of a sorted array.",
        "O(n^2).",
        9.0,
        2.0,
    ),
]

MULTI_TURN = [
    (
        [
            ("user", "I'm planning a trip to Japan in April."),
            (
                "assistant",
                "April is cherry blossom season, a lovely time to go. How can I help with your plans?",
            ),
        ],
        "What should I pack?",
        "Layers: April ranges from about 8 °C at night to 20 °C by day. Bring a light rain jacket, comfortable walking shoes you can slip off easily (many places ask you to remove shoes), and a small bag for carrying rubbish, since public bins are rare.",
        "Pack a heavy winter coat and snow boots.",
        8.5,
        3.0,
    ),
    (
        [
            ("system", "You are a concise cooking assistant."),
            ("user", "I have eggs, spinach and feta."),
            ("assistant", "Nice combination! Are you after breakfast or dinner?"),
        ],
        "Breakfast, please.",
        "Make a spinach and feta omelette: wilt a handful of spinach in butter, pour in two beaten eggs, crumble feta on top and fold once the eggs are just set.",
        "Boil the feta for twenty minutes.",
        9.0,
        2.0,
    ),
    (
        [
            ("user", "Can you help me with my résumé?"),
            ("assistant", "Of course. What role are you applying for?"),
        ],
        "A junior data analyst position.",
        "Lead with a short summary that names SQL, Python and a visualisation tool, then list projects with measurable results (e.g. 'cut report time by 40% by automating a weekly Excel job').",
        "Just write that you are good with computers.",
        8.0,
        3.0,
    ),
]


def conversation(history, prompt, answer):
    return [{"role": r, "content": c} for r, c in history] + [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": answer},
    ]


def row(prompt, chosen, rejected, sc, sr, history=(), rejected_history=None):
    return {
        "prompt": prompt,
        "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(),
        "chosen": conversation(history, prompt, chosen),
        "rejected": conversation(history if rejected_history is None else rejected_history, prompt, rejected),
        "messages": conversation(history, prompt, chosen),
        "score_chosen": sc,
        "score_rejected": sr,
    }


def main() -> None:
    rows = [row(p, c, r, sc, sr) for p, c, r, sc, sr in PAIRS]
    rows += [row(p, c, r, sc, sr, history=h) for h, p, c, r, sc, sr in MULTI_TURN]
    # deliberately bad rows, so the summary shows every outcome
    rows.append(
        row("Name a primary colour.", "Red is a primary colour.", "Blue is a primary colour.", 7.0, 7.0)
    )  # tie
    rows.append(row("Say hello.", "Hello!", "Hello! ", 8.0, 6.0))  # identical after whitespace normalisation
    rows.append(
        row("What is 2 + 2?", "<|im_start|>assistant\n4<|im_end|>", "5", 8.0, 2.0)
    )  # template residue
    rows.append(
        row(
            "Continue the story.",
            "The door creaked open.",
            "The cat sat down.",
            7.0,
            5.0,
            history=[("user", "Start a story."), ("assistant", "It was a dark night.")],
            rejected_history=[("user", "Start a story."), ("assistant", "It was a sunny day.")],
        )
    )  # histories differ
    rows.append(
        row("Describe the colour of grass.", "   ", "Grass is usually green.", 1.0, 6.0)
    )  # empty answer
    path = Path(__file__).resolve().parent.parent / "prefkit" / "examples" / "ultrafeedback-mini.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
