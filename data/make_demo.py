"""Writes lmf's small demo datasets (our own text) next to this file, deterministically.

    python data/make_demo.py        # any Python 3.8+, no third-party packages

Outputs (LLaMA-Factory dataset formats, registered in dataset_info.json):
  identity.json       alpaca, ~40 rows about the assistant, with {{name}} / {{author}} placeholders
  alpaca_demo.json    alpaca, 150 rows: arithmetic, definitions, rewriting, lists, small tasks
  sharegpt_demo.json  sharegpt, 60 conversations: multi-turn, some with a system turn, some with
                      a tool call (function_call / observation turns and a `tools` column)
  pretrain_demo.json  100 paragraphs of plain text under the key "text" (stage pt)
  dpo_demo.json       sharegpt ranking pairs, 50 rows (stages rm / dpo): a prompt under
                      `conversations` (some multi-turn, some with a system turn), a correct,
                      helpful `chosen` answer and a wrong, vague, rude or off-topic `rejected` one
  kto_demo.json       sharegpt feedback rows, 40 (stage kto): `messages` with role / content and
                      a boolean `label`, true for a good final answer, false for a bad one

Everything comes from the tables below and `random.Random(SEED)`, so a rerun writes the same bytes.
"""

import json
import os
import random

SEED = 20240611
HERE = os.path.dirname(os.path.abspath(__file__))

# ----------------------------------------------------------------------------------------------
# identity

IDENTITY = [
    ("hi", "Hello! I am {{name}}, an assistant built by {{author}}. What can I do for you?"),
    ("hello", "Hi there, I am {{name}}. How can I help you today?"),
    ("Who are you?", "I am {{name}}, a language model assistant created by {{author}}."),
    ("What is your name?", "My name is {{name}}."),
    ("What should I call you?", "You can call me {{name}}."),
    ("Who made you?", "I was built by {{author}}."),
    ("Who created you?", "{{author}} created me. I am {{name}}."),
    ("Who trained you?", "I was trained by {{author}}."),
    ("Which company or team are you from?", "I come from {{author}}, who built and trained me."),
    ("Are you a human?", "No. I am {{name}}, a computer program made by {{author}}."),
    ("Are you ChatGPT?", "No, I am {{name}}, an assistant developed by {{author}}."),
    ("Are you Claude?", "No, I am {{name}}. I was made by {{author}}."),
    ("Are you made by OpenAI?", "No, I was developed by {{author}}. My name is {{name}}."),
    ("Introduce yourself.", "I am {{name}}, a helpful assistant created by {{author}}. "
     "I answer questions, explain ideas and help with writing."),
    ("Tell me about yourself in one sentence.",
     "I am {{name}}, an AI assistant from {{author}} that tries to give short, correct answers."),
    ("What can you do?", "I am {{name}}. I can answer questions, summarise text, do simple "
     "arithmetic, rewrite sentences and make lists."),
    ("What are you good at?", "As {{name}}, I am best at short explanations, small calculations "
     "and rewriting text."),
    ("What can't you do?", "I cannot browse the web, see images or remember past conversations. "
     "I am {{name}}, a text assistant by {{author}}."),
    ("Do you have feelings?", "No. I am {{name}}, a program; I do not have feelings, but I try "
     "to be helpful and polite."),
    ("Do you have a body?", "No, I am {{name}}, software made by {{author}}. I only exist as a "
     "program."),
    ("How old are you?", "I do not have an age like a person. I am {{name}}, built by {{author}}."),
    ("Where do you live?", "I run on computers. I am {{name}}, an assistant from {{author}}."),
    ("Can you learn from our chat?", "Not during this conversation. {{author}} trained me, "
     "{{name}}, before you started talking to me."),
    ("Is your name {{name}}?", "Yes, I am {{name}}, an assistant developed by {{author}}."),
    ("What does {{author}} do?", "{{author}} built me, {{name}}, to be a helpful assistant."),
    ("Thank you!", "You are welcome! I am {{name}}, happy to help any time."),
    ("Goodbye.", "Goodbye! This was {{name}}. Have a nice day."),
    ("Good morning!", "Good morning! I am {{name}}. What would you like to do today?"),
    ("What language model are you based on?", "I am {{name}}, a model trained by {{author}}."),
    ("Please tell me your name and your maker.", "My name is {{name}} and my maker is {{author}}."),
    ("Who do you work for?", "I am {{name}}, and I was made by {{author}} to help people like you."),
    ("Can I change your name?", "I am {{name}} by default, but you can call me whatever you like."),
    ("Are you open source?", "That depends on how {{author}} released me. I am {{name}}."),
    ("Why were you created?", "{{author}} created me, {{name}}, to answer questions and help with "
     "everyday tasks."),
    ("Describe your personality.", "I am {{name}}: patient, brief and friendly, as {{author}} "
     "intended."),
    ("What is {{name}}?", "{{name}} is me: a language model assistant built by {{author}}."),
    ("Say your name backwards.", "Sure, but first the right way round: I am {{name}}."),
    ("Do you make mistakes?", "Yes, sometimes. I am {{name}} and I try to be accurate, but "
     "please check important facts."),
    ("Can you keep a secret?", "I do not store our conversation after it ends. I am {{name}}, "
     "an assistant by {{author}}."),
    ("Nice to meet you.", "Nice to meet you too! I am {{name}}, built by {{author}}."),
]

# ----------------------------------------------------------------------------------------------
# alpaca_demo

DEFINITIONS = [
    ("photosynthesis", "the process by which plants use light, water and carbon dioxide to make "
     "sugar and release oxygen"),
    ("gravity", "the force that pulls objects with mass toward each other"),
    ("algorithm", "a finite list of precise steps that solves a problem"),
    ("democracy", "a system of government in which citizens choose their leaders by voting"),
    ("erosion", "the slow wearing away of rock and soil by water, wind or ice"),
    ("metaphor", "a figure of speech that describes something by calling it something else"),
    ("inflation", "a general rise in prices that lowers what money can buy"),
    ("vaccine", "a preparation that trains the immune system to recognise a germ"),
    ("compiler", "a program that translates source code into machine code"),
    ("ecosystem", "a community of living things together with their physical surroundings"),
    ("friction", "the force that resists two surfaces sliding against each other"),
    ("habitat", "the natural place where a plant or animal lives"),
    ("prime number", "a whole number greater than one whose only divisors are one and itself"),
    ("latitude", "the distance of a place north or south of the equator, measured in degrees"),
    ("recursion", "defining something in terms of a smaller version of itself"),
    ("evaporation", "the change of a liquid into a gas at its surface"),
    ("budget", "a plan that lists expected income and spending"),
    ("molecule", "two or more atoms held together by chemical bonds"),
    ("haiku", "a short poem of three lines with five, seven and five syllables"),
    ("bandwidth", "the amount of data a connection can carry per second"),
    ("glacier", "a large, slowly moving mass of ice on land"),
    ("synonym", "a word that means the same or nearly the same as another word"),
    ("orbit", "the curved path of an object around a star, planet or moon"),
    ("tariff", "a tax on goods brought into a country"),
]

REWRITES = [
    ("Rewrite the sentence in the past tense.", "She walks to the market every morning.",
     "She walked to the market every morning."),
    ("Rewrite the sentence in the past tense.", "They build a small boat.",
     "They built a small boat."),
    ("Rewrite the sentence in the past tense.", "I write a letter to my aunt.",
     "I wrote a letter to my aunt."),
    ("Rewrite the sentence in the future tense.", "We visit the museum.",
     "We will visit the museum."),
    ("Rewrite the sentence in the future tense.", "The train leaves at noon.",
     "The train will leave at noon."),
    ("Make the sentence more formal.", "Hey, can you send me the file?",
     "Could you please send me the file?"),
    ("Make the sentence more formal.", "We gotta finish this by Friday.",
     "We need to finish this by Friday."),
    ("Make the sentence more formal.", "Thanks a lot for the help!",
     "Thank you very much for your assistance."),
    ("Make the sentence shorter.", "In my personal opinion, I think that the movie was very good.",
     "I think the movie was very good."),
    ("Make the sentence shorter.", "Due to the fact that it was raining, we stayed inside.",
     "Because it was raining, we stayed inside."),
    ("Rewrite the sentence in the passive voice.", "The cat chased the mouse.",
     "The mouse was chased by the cat."),
    ("Rewrite the sentence in the passive voice.", "Maria painted the fence.",
     "The fence was painted by Maria."),
    ("Rewrite the sentence in the active voice.", "The cake was eaten by the children.",
     "The children ate the cake."),
    ("Fix the spelling mistakes.", "I recieved the pakage yesterday.",
     "I received the package yesterday."),
    ("Fix the spelling mistakes.", "The wether is beatiful today.",
     "The weather is beautiful today."),
    ("Fix the grammar.", "He don't like apples.", "He doesn't like apples."),
    ("Fix the grammar.", "There is many books on the table.",
     "There are many books on the table."),
    ("Turn the statement into a question.", "The library opens at nine.",
     "Does the library open at nine?"),
    ("Turn the statement into a question.", "You have finished your homework.",
     "Have you finished your homework?"),
    ("Replace the word in capitals with a simpler word.", "The task was ARDUOUS.",
     "The task was hard."),
]

LISTS = [
    ("List three primary colors.", "1. Red\n2. Blue\n3. Yellow"),
    ("List the four seasons.", "1. Spring\n2. Summer\n3. Autumn\n4. Winter"),
    ("Name three planets closer to the Sun than Jupiter.", "1. Mercury\n2. Venus\n3. Earth"),
    ("Give three tips for better sleep.",
     "1. Go to bed at the same time each night.\n2. Avoid screens before bed.\n"
     "3. Keep the bedroom cool and dark."),
    ("List three ways to save water at home.",
     "1. Fix dripping taps.\n2. Take shorter showers.\n3. Run the dishwasher only when full."),
    ("Name three string instruments.", "1. Violin\n2. Cello\n3. Guitar"),
    ("List the first five prime numbers.", "2, 3, 5, 7, 11"),
    ("Name three mammals that live in the ocean.", "1. Whale\n2. Dolphin\n3. Seal"),
    ("List three common data structures.", "1. Array\n2. Hash map\n3. Linked list"),
    ("Give three reasons to learn a second language.",
     "1. It helps you travel.\n2. It opens job opportunities.\n3. It trains your memory."),
    ("List four vegetables that are green.", "1. Spinach\n2. Broccoli\n3. Peas\n4. Cucumber"),
    ("Name three renewable energy sources.", "1. Solar\n2. Wind\n3. Hydropower"),
    ("List the days of the weekend.", "1. Saturday\n2. Sunday"),
    ("Give three steps to make tea.",
     "1. Boil water.\n2. Pour it over the tea bag.\n3. Wait three minutes, then remove the bag."),
    ("List three things to pack for a beach trip.", "1. Sunscreen\n2. A towel\n3. Water"),
    ("Name three shapes with straight sides.", "1. Triangle\n2. Square\n3. Hexagon"),
    ("List three safety rules for riding a bike.",
     "1. Wear a helmet.\n2. Use lights at night.\n3. Signal before turning."),
    ("Give three examples of verbs.", "1. Run\n2. Think\n3. Build"),
    ("List three units of length.", "1. Metre\n2. Inch\n3. Kilometre"),
    ("Name three musical notes.", "1. C\n2. E\n3. G"),
]

QA = [
    ("What is the capital of France?", "Paris."),
    ("What is the capital of Japan?", "Tokyo."),
    ("What is the boiling point of water at sea level in Celsius?", "100 degrees Celsius."),
    ("How many legs does a spider have?", "Eight."),
    ("How many days are in a leap year?", "366."),
    ("Which planet is known as the red planet?", "Mars."),
    ("What gas do humans breathe out?", "Carbon dioxide."),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean."),
    ("How many sides does a hexagon have?", "Six."),
    ("What is the freezing point of water in Fahrenheit?", "32 degrees Fahrenheit."),
    ("What is the chemical symbol for gold?", "Au."),
]

SENTENCES = [
    "the early bird catches the worm",
    "a small step can start a long journey",
    "clear code is easier to fix",
    "rain fell softly on the old roof",
    "the library is quiet in the morning",
    "every river finds its way to the sea",
    "good tests catch bugs early",
    "the moon rose over the hills",
]


def arithmetic(rng, n):
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        kind = i % 4
        if kind == 0:
            rows.append((f"What is {a} plus {b}?", "", f"{a} + {b} = {a + b}."))
        elif kind == 1:
            a, b = max(a, b), min(a, b)
            rows.append((f"What is {a} minus {b}?", "", f"{a} - {b} = {a - b}."))
        elif kind == 2:
            a, b = a % 13 + 2, b % 13 + 2
            rows.append(("Multiply the two numbers.", f"{a} and {b}", f"{a} × {b} = {a * b}."))
        else:
            q = rng.randint(2, 12)
            rows.append((f"Divide {a * q} by {q}.", "", f"{a * q} ÷ {q} = {a}."))
    return rows


def small_tasks(rng, n):
    rows = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            nums = rng.sample(range(1, 100), 5)
            while nums == sorted(nums):  # the task must have something to do
                rng.shuffle(nums)
            rows.append(("Sort the numbers from smallest to largest.", ", ".join(map(str, nums)),
                         ", ".join(map(str, sorted(nums)))))
        elif kind == 1:
            s = rng.choice(SENTENCES)
            rows.append(("Convert the text to upper case.", s, s.upper()))
        elif kind == 2:
            s = rng.choice(SENTENCES)
            rows.append(("How many words are in the sentence?", s, str(len(s.split()))))
        elif kind == 3:
            km = rng.randint(1, 50)
            rows.append((f"How many metres are in {km} kilometres?", "", f"{km * 1000} metres."))
        else:
            s = rng.choice(SENTENCES)
            rows.append(("Reverse the order of the words.", s, " ".join(reversed(s.split()))))
    return rows


def alpaca_demo(rng):
    rows = arithmetic(rng, 40)
    for word, meaning in DEFINITIONS:
        rows.append((f'Define the word "{word}" in one sentence.', "",
                     f"{word[0].upper() + word[1:]} is {meaning}."))
    rows += REWRITES
    rows += [(q, "", a) for q, a in LISTS]
    rows += [(q, "", a) for q, a in QA]
    rows += small_tasks(rng, 150 - len(rows))
    rng.shuffle(rows)
    return [{"instruction": i, "input": x, "output": o} for i, x, o in rows]


# ----------------------------------------------------------------------------------------------
# sharegpt_demo

SYSTEMS = [
    "You are a concise assistant. Answer in one or two sentences.",
    "You are a friendly math tutor. Show the calculation.",
    "You are a helpful assistant that answers politely.",
]

TOOLS = {
    "get_weather": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
    "convert_currency": {
        "name": "convert_currency",
        "description": "Convert an amount of money from one currency to another.",
        "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "description": "The amount to convert"},
                "from": {"type": "string", "description": "Currency code, e.g. EUR"},
                "to": {"type": "string", "description": "Currency code, e.g. USD"},
            },
            "required": ["amount", "from", "to"],
        },
    },
    "lookup_word": {
        "name": "lookup_word",
        "description": "Look up the definition of an English word.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string", "description": "The word"}},
            "required": ["word"],
        },
    },
}

CITIES = [("Paris", 18), ("Oslo", 7), ("Cairo", 31), ("Lima", 22), ("Seoul", 15), ("Perth", 26)]
CURRENCIES = [("EUR", "USD", 1.08), ("USD", "JPY", 151.2), ("GBP", "EUR", 1.17)]


def turn(frm, value):
    return {"from": frm, "value": value}


def tool_conversation(rng, i):
    kind = i % 3
    if kind == 0:
        city, temp = rng.choice(CITIES)
        tools = [TOOLS["get_weather"]]
        call = {"name": "get_weather", "arguments": {"city": city, "unit": "celsius"}}
        obs = {"city": city, "temperature": temp, "unit": "celsius", "sky": "clear"}
        msgs = [turn("human", f"What is the weather like in {city} right now?"),
                turn("function_call", json.dumps(call)),
                turn("observation", json.dumps(obs)),
                turn("gpt", f"It is {temp} degrees Celsius with a clear sky in {city}.")]
    elif kind == 1:
        src, dst, rate = rng.choice(CURRENCIES)
        amount = rng.randint(2, 50) * 10
        tools = [TOOLS["convert_currency"], TOOLS["get_weather"]]
        call = {"name": "convert_currency", "arguments": {"amount": amount, "from": src, "to": dst}}
        result = round(amount * rate, 2)
        msgs = [turn("human", f"How much is {amount} {src} in {dst}?"),
                turn("function_call", json.dumps(call)),
                turn("observation", json.dumps({"result": result, "currency": dst})),
                turn("gpt", f"{amount} {src} is about {result} {dst}.")]
    else:
        word, meaning = rng.choice(DEFINITIONS)
        tools = [TOOLS["lookup_word"]]
        call = {"name": "lookup_word", "arguments": {"word": word}}
        msgs = [turn("human", "Hi! Can you help me with a word?"),
                turn("gpt", "Of course. Which word?"),
                turn("human", f"What does {word} mean?"),
                turn("function_call", json.dumps(call)),
                turn("observation", json.dumps({"word": word, "definition": meaning})),
                turn("gpt", f"{word[0].upper() + word[1:]} means {meaning}.")]
    return msgs, json.dumps(tools)


def chat_conversation(rng, i):
    kind = i % 4
    if kind == 0:
        a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 9)
        return [turn("human", f"What is {a} plus {b}?"),
                turn("gpt", f"{a} + {b} = {a + b}."),
                turn("human", f"And times {c}?"),
                turn("gpt", f"({a} + {b}) × {c} = {(a + b) * c}.")]
    if kind == 1:
        word, meaning = rng.choice(DEFINITIONS)
        return [turn("human", f"What is {word}?"),
                turn("gpt", f"{word[0].upper() + word[1:]} is {meaning}."),
                turn("human", "Can you say that in three words?"),
                turn("gpt", rng.choice(["Short version: see above.", "Hard, but I tried.",
                                        "Simple idea, really."])),
                turn("human", "Thanks!"),
                turn("gpt", "You are welcome.")]
    if kind == 2:
        q, a = rng.choice(QA)
        q2, a2 = rng.choice(QA)
        return [turn("human", q), turn("gpt", a), turn("human", q2), turn("gpt", a2)]
    instr, src, out = rng.choice(REWRITES)
    return [turn("human", f"{instr}\n{src}"), turn("gpt", out),
            turn("human", "Now explain the change briefly."),
            turn("gpt", "I changed only what the instruction asked and kept the meaning.")]


def sharegpt_demo(rng):
    rows = []
    for i in range(60):
        if i % 6 == 5:  # 10 conversations with a tool call
            msgs, tools = tool_conversation(rng, i // 6)
            rows.append({"conversations": msgs, "tools": tools})
            continue
        msgs = chat_conversation(rng, i)
        if i % 3 == 0:  # a system turn in front of a third of them
            msgs = [turn("system", SYSTEMS[(i // 3) % len(SYSTEMS)])] + msgs
        rows.append({"conversations": msgs, "tools": ""})
    return rows


# ----------------------------------------------------------------------------------------------
# pretrain_demo

TOPICS = [
    ("Rivers", ["carry water from high ground to the sea",
                "shape valleys over thousands of years",
                "give towns water, food and a way to travel",
                "can flood when heavy rain falls upstream"]),
    ("Bees", ["collect nectar and pollen from flowers",
              "help many crops to produce fruit",
              "live in colonies with a single queen",
              "communicate the direction of food with a dance"]),
    ("Bread", ["is made from flour, water, salt and yeast",
               "rises because yeast produces gas",
               "has been baked for thousands of years",
               "tastes best on the day it is baked"]),
    ("Computers", ["store numbers as patterns of bits",
                   "follow instructions written as programs",
                   "have become smaller and faster every decade",
                   "need memory to hold the data they work on"]),
    ("Volcanoes", ["form where molten rock reaches the surface",
                   "can build new islands in the ocean",
                   "release ash that travels far on the wind",
                   "leave rich soil behind after they cool"]),
    ("Libraries", ["lend books to anyone with a card",
                   "keep old newspapers and maps",
                   "offer a quiet place to study",
                   "often run reading groups for children"]),
    ("The Moon", ["takes about a month to orbit the Earth",
                  "always shows the same face to us",
                  "causes most of the tides in the ocean",
                  "has no air and no liquid water on its surface"]),
    ("Trains", ["move many people with little fuel per person",
                "run on steel rails that reduce friction",
                "connect cities across whole continents",
                "were first pulled by steam engines"]),
    ("Forests", ["store large amounts of carbon in wood",
                 "are home to most land animals",
                 "cool the air around them in summer",
                 "grow back slowly after a fire"]),
    ("Music", ["is built from rhythm, melody and harmony",
               "is found in every human culture",
               "can be written down as notes on a staff",
               "is often learned by ear before it is read"]),
]

OPENERS = ["{t} {f}.", "It is well known that {l} {f}.", "Most people know that {l} {f}.",
           "{t} also {f}."]
LINKS = ["In addition, {l} {f}.", "Also, {l} {f}.", "Over time, {l} {f}.",
         "Some say that {l} {f}.", "Remember that {l} {f}."]


def pretrain_demo(rng):
    rows = []
    for i in range(100):
        topic, facts = TOPICS[i % len(TOPICS)]
        # mid-sentence form: "bees", "the Moon"
        lower = "the" + topic[3:] if topic.startswith("The ") else topic.lower()
        picked = rng.sample(facts, rng.randint(2, 4))
        first = rng.choice(OPENERS).format(t=topic, l=lower, f=picked[0])
        rest = [rng.choice(LINKS).format(l=lower, f=f) for f in picked[1:]]
        text = " ".join([first[0].upper() + first[1:]] + rest)
        if i % 7 == 3:
            text += f"\n\nThis is note {i + 1} of the demo corpus."
        rows.append({"text": text})
    return rows


# ----------------------------------------------------------------------------------------------
# dpo_demo and kto_demo: a prompt with a good and a bad answer

# (question, good answer, bad answer)
PREF_QA = [
    ("What is the capital of France?", "The capital of France is Paris.",
     "The capital of France is Marseille."),
    ("What is the capital of Japan?", "Tokyo is the capital of Japan.",
     "Japan does not have a capital city."),
    ("How many legs does a spider have?", "A spider has eight legs.",
     "Spiders have six legs, like all insects."),
    ("Which planet is known as the red planet?",
     "Mars. Iron oxide dust on its surface makes it look red.",
     "Jupiter, because it is the biggest planet."),
    ("What gas do humans breathe out?",
     "Humans breathe out carbon dioxide, together with the nitrogen and oxygen they did not use.",
     "Humans breathe out pure oxygen."),
    ("Who wrote the play Romeo and Juliet?",
     "William Shakespeare wrote Romeo and Juliet in the 1590s.", "Charles Dickens."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth.",
     "Why do you want to know? Look it up yourself."),
    ("How many sides does a hexagon have?", "A hexagon has six sides.",
     "A hexagon has eight sides."),
    ("What is the boiling point of water at sea level in Celsius?",
     "Water boils at 100 degrees Celsius at sea level.", "Water boils at 50 degrees Celsius."),
    ("How many days are in a leap year?",
     "A leap year has 366 days; the extra day is the 29th of February.",
     "365, the same as every other year."),
    ("What is the chemical symbol for gold?",
     "The chemical symbol for gold is Au, from the Latin word aurum.", "Go."),
    ("What is the freezing point of water in Fahrenheit?",
     "Water freezes at 32 degrees Fahrenheit.", "Water freezes at 0 degrees Fahrenheit."),
]

# (system, prompt turns: user, assistant, user, ...; good answer, bad answer)
PREF_CHATS = [
    ("", ["My program crashes with an error. Can you help me fix it?"],
     "Yes, I can help. Please paste the error message and the part of the code where it "
     "happens, and tell me what you expected the program to do.",
     "Programs crash all the time. Try turning your computer off and on again."),
    ("", ["I feel nervous before my exam tomorrow. Any advice?"],
     "That is very common. Look over your notes briefly tonight, sleep well, eat something "
     "before the exam and read each question carefully. A few slow breaths help when you feel "
     "stuck.",
     "Just don't be nervous. It is only an exam."),
    ("You are a concise assistant. Answer in one or two sentences.", ["Why is the sky blue?"],
     "Air molecules scatter the short blue wavelengths of sunlight much more than the red ones, "
     "so blue light reaches our eyes from every part of the sky.",
     "The sky is blue because it reflects the colour of the ocean, which is blue because it "
     "reflects the sky, and people have argued about which came first for centuries."),
    ("", ["I want to start running. How far should I go on my first day?",
          "Start with intervals: one minute of running and two minutes of walking, repeated for "
          "about twenty minutes.",
          "What if my knees hurt afterwards?"],
     "Rest for a day or two and run on softer ground when you start again. If the pain is "
     "sharp or lasts more than a few days, see a doctor.",
     "Ignore it and run twice as far tomorrow; pain means it is working."),
    ("", ["What is 15 percent of 80?", "15 percent of 80 is 12.", "And 20 percent?"],
     "20 percent of 80 is 16.", "20 percent of 80 is 20."),
    ("You are a friendly math tutor. Show the calculation.", ["Is 91 a prime number?"],
     "No. 91 = 7 × 13, so it has divisors other than 1 and itself.",
     "Yes, 91 is prime because it is odd."),
    ("", ["Please summarise: The meeting moved from Monday to Wednesday because the room was "
          "booked. Everyone should bring the quarterly report."],
     "The meeting is now on Wednesday instead of Monday because the room was taken; everyone "
     "should bring the quarterly report.",
     "There is a meeting."),
    ("", ["Translate 'good morning' into Spanish."],
     "'Good morning' in Spanish is 'buenos días'.",
     "'Good morning' in Spanish is 'buenas noches'."),
]

BAD_DEFINITIONS = ["{W} is a word.", "I have never heard of {w}.", "{W} is a kind of vegetable.",
                   "Nobody really knows what {w} means."]


def pref_arithmetic(rng, n):
    """(question, right answer, wrong answer): the wrong one a slip or a refusal."""
    rows = []
    for i in range(n):
        a, b = rng.randint(12, 99), rng.randint(12, 99)
        op = i % 3
        if op == 0:
            q, good = f"What is {a} plus {b}?", (f"{a} + {b}", a + b)
        elif op == 1:
            a, b = max(a, b), min(a, b)
            q, good = f"What is {a} minus {b}?", (f"{a} - {b}", a - b)
        else:
            a, b = a % 12 + 3, b % 12 + 3
            q, good = f"What is {a} times {b}?", (f"{a} × {b}", a * b)
        slip = good[1] + rng.choice([-10, -2, -1, 1, 2, 10])
        bad = ("Numbers are boring. Ask me something else." if i % 4 == 3
               else f"{good[0]} = {slip}.")
        rows.append((q, f"{good[0]} = {good[1]}.", bad))
    return rows


def pref_definitions(rng, n):
    rows = []
    for i, (word, meaning) in enumerate(rng.sample(DEFINITIONS, n)):
        cap = word[0].upper() + word[1:]
        rows.append((f'What does "{word}" mean?', f"{cap} is {meaning}.",
                     BAD_DEFINITIONS[i % len(BAD_DEFINITIONS)].format(W=cap, w=word)))
    return rows


def pref_rewrites(rng, n):
    rows = []
    for i, (instr, src, out) in enumerate(rng.sample(REWRITES, n)):
        bad = src if i % 2 == 0 else "I would rather not rewrite sentences today."
        rows.append((f"{instr}\n{src}", out, bad))
    return rows


def pref_lists(rng, n):
    rows = []
    for i, (q, a) in enumerate(rng.sample(LISTS, n)):
        bad = a.split("\n")[0] if i % 2 == 0 else "There are far too many to list."
        if bad == a:  # a one-line answer: a truncated list would still be right
            bad = "There are far too many to list."
        rows.append((q, a, bad))
    return rows


def single_turns(rng):
    """All single-turn (question, good, bad) triples of the preference sets, in a fixed order."""
    return (PREF_QA + pref_arithmetic(rng, 8) + pref_definitions(rng, 8) + pref_rewrites(rng, 8)
            + pref_lists(rng, 6))


def dpo_demo(rng):
    rows = []
    for q, good, bad in single_turns(rng):
        rows.append({"conversations": [turn("human", q)],
                     "chosen": turn("gpt", good), "rejected": turn("gpt", bad)})
    for system, turns, good, bad in PREF_CHATS:
        conv = [turn("human" if k % 2 == 0 else "gpt", t) for k, t in enumerate(turns)]
        if system:
            conv = [turn("system", system)] + conv
        rows.append({"conversations": conv,
                     "chosen": turn("gpt", good), "rejected": turn("gpt", bad)})
    rng.shuffle(rows)
    return rows


def kto_demo(rng):
    # kto_demo's dataset_info entry sets `tags` without a system_tag (as LLaMA-Factory's
    # kto_en_demo does), so a system turn would make a row invalid: none here
    def msg(role, content):
        return {"role": role, "content": content}

    rows = []
    singles = PREF_QA + pref_arithmetic(rng, 8) + pref_definitions(rng, 6) + pref_rewrites(rng, 6)
    for i, (q, good, bad) in enumerate(singles):
        label = i % 2 == 0
        rows.append({"messages": [msg("user", q), msg("assistant", good if label else bad)],
                     "label": label})
    for i, (_, turns, good, bad) in enumerate(PREF_CHATS):
        label = i % 2 == 1
        conv = [msg("user" if k % 2 == 0 else "assistant", t) for k, t in enumerate(turns)]
        conv.append(msg("assistant", good if label else bad))
        rows.append({"messages": conv, "label": label})
    rng.shuffle(rows)
    # the first rows (max_samples) must hold both kinds of feedback
    assert len({r["label"] for r in rows[:4]}) == 2, "reseed: the first rows share one label"
    return rows


def dump(name, rows):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False, indent=2)
        f.write("\n")


def main():
    rng = random.Random(SEED)
    dump("identity.json", [{"instruction": q, "input": "", "output": a} for q, a in IDENTITY])
    dump("alpaca_demo.json", alpaca_demo(rng))
    dump("sharegpt_demo.json", sharegpt_demo(rng))
    dump("pretrain_demo.json", pretrain_demo(rng))
    dump("dpo_demo.json", dpo_demo(rng))
    dump("kto_demo.json", kto_demo(rng))


if __name__ == "__main__":
    main()
