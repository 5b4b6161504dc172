"""Sentence templates and word lists of the built-in corpus's other domains (data only; used by
`documents.py`; `entities.py` and `corpus.py` read its conditions and professions): biography, recipes,
medical, law, verse, science, spelling.

Templates use `{slot}` fields and `[a|b|c]` alternatives (one picked at random, left to right).
"""

from __future__ import annotations

from ._lexicon import _p, _w

# --- biography -------------------------------------------------------------------------------------
PROFESSIONS = (
    "professor",
    "nurse",
    "architect",
    "journalist",
    "surgeon",
    "psychologist",
    "attorney",
    "teacher",
)
PROF_FIELDS = {
    "professor": _w("history mathematics philosophy economics chemistry linguistics physics"),
    "nurse": _w("nursing midwifery pediatrics"),
    "architect": _w("architecture design engineering"),
    "journalist": _w("journalism politics literature history"),
    "surgeon": _w("medicine surgery anatomy"),
    "psychologist": _w("psychology neuroscience sociology"),
    "attorney": _w("law economics politics"),
    "teacher": _w("education mathematics literature music history"),
}
PROF_ACTS = {
    "professor": _p(
        "{He} teaches graduate seminars on {field} and supervises doctoral students.; "
        "{His} lectures on {field} are popular with undergraduates.; "
        "{He} holds a chair in {field} at the University of {uni}.; "
        "{He} has published three books and many papers on {field}.; "
        "{His} research group studies the history of {field}.; "
        "{He} was promoted to full professor in {year2}.; "
        "Each term {he} grades exams and advises students writing their theses."
    ),
    "nurse": _p(
        "{He} works night shifts on the ward of the {city} General Hospital.; "
        "{He} checks the patients' blood pressure and gives them their medication.; "
        "{He} cares for newborn babies and their mothers.; "
        "{His} colleagues on the ward rely on {him} during busy shifts.; "
        "{He} is a registered nurse with {years} years of experience.; "
        "{He} changes dressings, takes temperatures and comforts worried families.; "
        "{He} trains new nurses in the emergency department."
    ),
    "architect": _p(
        "{He} designed the new library in {city}.; "
        "{His} buildings are known for their glass facades and open floor plans.; "
        "{He} draws plans for houses, schools and bridges.; "
        "{He} runs a small design studio with four partners.; "
        "{His} firm won the competition to rebuild the old station in {city}.; "
        "{He} works with engineers to make {his} designs safe and affordable.; "
        "{He} is a licensed architect."
    ),
    "journalist": _p(
        "{He} writes for the {city} Herald and covers local politics.; "
        "{His} reports on corruption led to a public inquiry.; "
        "{He} interviews ministers, witnesses and ordinary citizens.; "
        "{He} has worked as a foreign correspondent in {city_country}.; "
        "{His} weekly column is read across the country.; "
        "{He} is an award-winning journalist.; "
        "{He} edits the news desk and checks every story before it is printed."
    ),
    "surgeon": _p(
        "{He} performs heart operations at the {city} Clinic.; "
        "{He} specializes in surgery of the hip and knee.; "
        "{He} spends long hours in the operating theatre.; "
        "{His} team carried out the first kidney transplant in {city_country}.; "
        "{He} is a consultant surgeon.; "
        "{He} trains junior doctors in surgical technique.; "
        "{He} operates on patients injured in accidents."
    ),
    "psychologist": _p(
        "{He} treats patients with anxiety and depression.; "
        "{He} studies how children learn to speak.; "
        "{His} clinic in {city} offers therapy for families.; "
        "{He} is a clinical psychologist.; "
        "{He} listens to {his} clients and helps them understand their behaviour.; "
        "{His} research on memory and emotion is widely cited.; "
        "{He} runs experiments on attention and decision making."
    ),
    "attorney": _p(
        "{He} represents clients in commercial disputes.; "
        "{He} is a partner at a law firm in {city}.; "
        "{He} argued a famous case before the High Court of {city_country}.; "
        "{He} drafts contracts and advises companies on regulation.; "
        "{He} is an attorney who defends people accused of crimes.; "
        "{His} practice focuses on family law and property.; "
        "{He} was admitted to the bar in {year2}."
    ),
    "teacher": _p(
        "{He} teaches {field} at a primary school in {city}.; "
        "{His} pupils call {him} the best teacher in the school.; "
        "{He} prepares lessons, marks homework and meets parents.; "
        "{He} is a teacher with a class of thirty children.; "
        "{He} coaches the school choir and organizes trips to the museum.; "
        "{He} has taught {field} to teenagers for {years} years.; "
        "{He} runs the reading club after school."
    ),
}
BIO_OPENINGS = _p(
    "{full} (born {year} in {birth}, {country}) is {a_prof} from {country}.; "
    "{full} is {a_prof} [who lives|working|based] in {city}.; "
    "Born in {birth} in {year}, {full} grew up in {country}.; "
    "{full} was born in {year} in the [town|city] of {birth}.; "
    "{title} {surname} is {a_prof} [who lives|based] in {city}, {city_country}."
)
BIO_LIFE = _p(
    "{He} studied {field} at the University of {uni} and graduated in {year1}.; "
    "After finishing school, {he} moved to {uni} to study {field}.; "
    "{He} is married to {spouse} and has {kids} children.; "
    "{His} [father|mother] was a [farmer|baker|sailor|clerk|tailor] in {birth}.; "
    "{He} speaks {language} and [English|two other languages].; "
    "In {year2}, {he} received the {prize} Prize for {his} work.; "
    "{surname} lives in {city} with {his} [family|partner|two dogs].; "
    "In {his} spare time {he} [enjoys hiking|plays the piano|paints|grows vegetables].; "
    "{He} began {his} career in {year1} in {city}.; "
    "Colleagues describe {given} as [patient|generous|demanding|careful]."
)

# --- recipes -------------------------------------------------------------------------------------
DISHES = _w("stew soup pie bread salad curry cake tart risotto pancakes dumplings casserole porridge")
MAINS = _w("chicken beef lamb lentils chickpeas mushrooms salmon pork tofu barley potatoes beans")
VEG = _w("onions carrots leeks peppers tomatoes courgettes shallots parsnips turnips potatoes")
SPICES = _w("cumin paprika thyme rosemary cinnamon nutmeg oregano coriander ginger basil")
LIQUIDS = _p("stock; milk; cream; water; white wine; coconut milk; tomato sauce; apple juice")
RECIPE_TITLE = "[{dem} |Easy |Slow-cooked |Spiced |]{main} {dish}[ with {veg}|]"
RECIPE_NOTE = "This dish is [popular|traditional|served at weddings] in {c}, where it is made with local {e}."
STEPS = _p(  # in cooking order: a recipe keeps a sorted subset
    "Preheat the oven to {temp} degrees.; "
    "Heat the oil in a large pan over [medium|high] heat.; "
    "Chop the {veg} and fry them until [soft|golden], about {m} minutes.; "
    "Add the {main} and stir [well|for two minutes].; "
    "Season with {spice}, salt and pepper.; "
    "Pour in the {liquid} and bring to the boil.; "
    "Cover and simmer for {m2} minutes, stirring [occasionally|from time to time].; "
    "In a bowl, whisk the eggs with the flour and a pinch of salt.; "
    "Fold in the {veg} and the {spice}.; "
    "Transfer the mixture to a baking dish and bake for {m2} minutes.; "
    "Taste and add more {spice} if needed.; "
    "Let it rest for {m} minutes before serving.; "
    "Garnish with fresh {spice} and a spoonful of cream.; "
    "Serve [hot|warm] with bread and a green salad."
)

# --- medical -------------------------------------------------------------------------------------
_CONDITION_TABLE = """
hypertension | heart and blood vessels | headaches, dizziness, nosebleeds | high blood pressure | ACE inhibitors and a low-salt diet | cardiologist
asthma | lungs | wheezing, shortness of breath, chest tightness | inflammation of the airways | inhaled corticosteroids | pulmonologist
migraine | brain | severe headaches, nausea, sensitivity to light | changes in brain activity | triptans and rest in a dark room | neurologist
arthritis | joints | joint pain, stiffness, swelling | inflammation of the joints | anti-inflammatory drugs and exercise | rheumatologist
insomnia | brain | difficulty falling asleep, fatigue, irritability | stress and poor sleep habits | sleep hygiene and cognitive therapy | sleep specialist
anemia | blood | fatigue, pale skin, cold hands | a lack of iron | iron supplements | hematologist
diabetes | pancreas | thirst, frequent urination, blurred vision | high blood sugar | insulin and diet control | endocrinologist
pneumonia | lungs | fever, cough, chest pain | a bacterial or viral infection | antibiotics | pulmonologist
gastritis | stomach | stomach pain, nausea, bloating | inflammation of the stomach lining | antacids | gastroenterologist
eczema | skin | itching, dry skin, red patches | an overactive immune response | moisturizing creams | dermatologist
glaucoma | eyes | loss of side vision, eye pain, halos around lights | raised pressure inside the eye | eye drops | ophthalmologist
tonsillitis | throat | sore throat, fever, difficulty swallowing | a viral infection | rest and fluids | general practitioner
osteoporosis | bones | fractures, back pain, loss of height | loss of bone density | calcium and vitamin D | rheumatologist
hepatitis | liver | jaundice, fatigue, abdominal pain | a viral infection of the liver | antiviral medication | hepatologist
"""
CONDITIONS: dict[str, dict] = {}
for _row in _CONDITION_TABLE.strip().splitlines():
    _name, _organ, _symptoms, _cause, _treatment, _doctor = (x.strip() for x in _row.split("|"))
    CONDITIONS[_name] = {
        "organ": _organ,
        "symptoms": tuple(s.strip() for s in _symptoms.split(",")),
        "cause": _cause,
        "treatment": _treatment,
        "doctor": _doctor,
    }
MED_FACTS = _p(
    "{C} is a [common|chronic|serious] condition that affects the {organ}.; "
    "The main symptoms of {c} are {s0}, {s1} and {s2}.; "
    "{C} is usually caused by {cause}.; "
    "Patients with {c} are [often|usually] treated with {treatment}.; "
    "A diagnosis of {c} is [made|confirmed] by a {doctor}.; "
    "[Early|Common] signs of {c} include {s0} and {s1}.; "
    "If you have {s0} and {s1}, you should see a doctor, because it may be {c}.; "
    "{C} can [often|usually] be managed with {treatment}.; "
    "The recommended dosage of {med} for {c} is {dose} milligrams [once|twice] a day.; "
    "{med} is a medicine used to treat {c}.; "
    "Chronic {c} [raises the risk of|may lead to] complications in the {organ}."
)
MED_QA = {
    "symptoms": ("What are the symptoms of {c}?", "The main symptoms of {c} are {s0}, {s1} and {s2}."),
    "cause": ("What causes {c}?", "{C} is usually caused by {cause}."),
    "treatment": ("How is {c} treated?", "{C} is [usually|often] treated with {treatment}."),
    "organ": ("Which organ does {c} affect?", "{C} affects the {organ}."),
    "medicine": ("What is {med} used for?", "{med} is a medicine used to treat {c}."),
}
MED_CASE = _p(
    "A {age}-year-old {who} presented with {s0} and {s1}.; "
    "{He} reported that the symptoms had started {n} [days|weeks] earlier.; "
    "The {doctor} diagnosed {c} and prescribed [{treatment}|{med}].; "
    "After [two|three|six] weeks, {his} {s0} had [improved|resolved]."
)

# --- law -----------------------------------------------------------------------------------------
ACT_TOPICS = _w("Trade Property Contracts Shipping Employment Water Mining Banking Tenancy Copyright")
DUTIES = _p(
    "export {e}; operate a mine; sell alcohol; build on public land; practise law; fish in the river {r}"
)
CASE_HEAD = "{p} v. {d}[ (High Court of {country}, {year})|, decided in {capital} in {year}]"
CASE_STEPS = _p(
    "The plaintiff, {p}, alleged that the defendant, {d}, had breached the contract of {year}.; "
    "The defendant denied liability and argued that the claim was barred by the statute of limitations.; "
    "Under section {sec} of the {act}, the court may order the defendant to pay damages.; "
    "The High Court of {country}, sitting in {capital}, held that the agreement was [void|valid].; "
    "The court found that {d} had acted [in good faith|negligently].; "
    "On appeal, the judgment was [reversed|affirmed|set aside] and the costs were awarded to [{p}|{d}]."
)
LAW_CLAUSES = _p(
    "Section {sec} of the {act} provides that no person shall {duty} without a licence.; "
    "Under section {sec}, the court may order the defendant to pay damages to the plaintiff.; "
    "Pursuant to section {sec2}, the tenant shall give the landlord {n} days' written notice.; "
    "Any dispute arising under this agreement shall be settled by arbitration in {capital}.; "
    "The parties hereby agree that the laws of {country} shall govern this contract.; "
    "A person who fails to comply with this section commits an offence and is liable to a fine.; "
    "The burden of proof rests on the party who asserts the claim.; "
    "The statute was amended in {year} to protect [workers|tenants|consumers|creditors].; "
    "The judge instructed the jury to consider only the evidence presented at trial.; "
    "The {act} applies to every contract made in {country} after {year}."
)

# --- verse ---------------------------------------------------------------------------------------
RHYMES = tuple(
    _w(s)
    for s in _p(
        "night light sight flight delight might; day decay way ray May play clay; heart art part dart; "
        "eyes skies lies sighs ties; death breath; moon tune noon boon; sea tree plea decree; "
        "king spring thing ring wing sting; air despair hair care prayer snare; time rhyme prime crime clime; "
        "grace face place race; gold fold mould hold; grief leaf thief relief; tears years fears spheres peers; "
        "fire desire lyre pyre; rose woes foes snows; sword lord word accord"
    )
)
V_ADJ = _w("gentle sweet cruel fair proud sable golden bitter wanton noble wretched tender silent")
V_NOUN = _w("love beauty fortune sorrow honour summer winter virtue envy passion nature heaven")
V_VERB = _w("wound mock steal bless devour adorn betray kindle wither gild")
V_NAMES = _w("ROMEO ORLANDO VIOLA PORTIA LEONTES HERMIA OBERON CLAUDIO BEATRICE LYSANDER ROSALIND")
V_LINES = _p(
    "O {adj} {noun}, how dost thou {verb} my {R}; "
    "When {noun} doth {verb} the {adj} {R}; "
    "And all the stars of heaven shall {verb} thy {R}; "
    "Thy {adj} {noun} is fairer than the {R}; "
    "I swear by all the gods and by the {adj} {R}; "
    "Yet {name} doth weep in {adj} {R}; "
    "Shall I compare thee to the {adj} {R}; "
    "For thou art {adj} as {noun} and the {R}; "
    "Then let not {noun} {verb} our {adj} {R}; "
    "Hath not my {noun} outlived the {adj} {R}; "
    "Come, {name}, and {verb} me with thy {R}; "
    "Alas, that {noun} should {verb} so {adj} a {R}"
)

# --- science -------------------------------------------------------------------------------------
SCI_FACTS = _p(
    "Water boils at 100 degrees Celsius at sea level.; "
    "An electron carries a negative electric charge.; "
    "A molecule of water contains two hydrogen atoms and one oxygen atom.; "
    "Light travels at about 300,000 kilometres per second.; "
    "The resistance of a wire increases with its length.; "
    "Plants convert sunlight into chemical energy through photosynthesis.; "
    "A transistor can amplify or switch an electric current.; "
    "The algorithm sorts the list by repeatedly comparing neighbouring elements.; "
    "A compiler translates source code into machine instructions.; "
    "DNA stores the genetic information of living cells.; "
    "Sound travels faster in water than in air.; "
    "A laser produces a narrow beam of coherent light.; "
    "The processor executes millions of instructions every second.; "
    "Iron rusts when it reacts with oxygen and water.; "
    "The voltage across a resistor equals the current times the resistance.; "
    "A neural network learns by adjusting the weights of its connections."
)
SCI_REPORT = _p(
    "Researchers at the University of {city} measured the {qty} of {mat} at {num} {unit}.; "
    "In the experiment, a sample of {mat} was cooled to {temp} kelvin in the laboratory.; "
    "The team used {a_inst} to observe how the {qty} changed over time.; "
    "They found that the {qty} [increased|decreased|doubled] when the {var} was raised.; "
    "The results suggest that {mat} could be used to build faster [batteries|processors|sensors|solar panels].; "
    "The data were analysed with an algorithm that [fits a curve|counts the particles|removes the noise].; "
    "Each measurement was repeated {n} times to reduce the error.; "
    "The findings were published in a journal of [physics|chemistry|engineering|computer science].; "
    "The circuit was powered by a {num}-volt battery and controlled by a small computer.; "
    "Further experiments will test whether the effect holds at higher {var}."
)
QTY_UNIT = {
    "conductivity": "siemens per metre",
    "density": "kilograms per cubic metre",
    "melting point": "kelvin",
    "magnetic field": "tesla",
    "resistance": "ohms",
    "wavelength": "nanometres",
    "pressure": "pascals",
    "energy": "electronvolts",
}
MATERIALS = _w("graphene silicon copper quartz titanium helium nitrogen aluminium lithium tungsten")
VARS = _w("temperature pressure voltage frequency current")
INSTRUMENTS = _w("microscope spectrometer telescope oscilloscope laser thermometer sensor")

# --- spelling ------------------------------------------------------------------------------------
SPELL_WORDS = _w(
    "cat dog sun tree book fish bird milk rain snow lamp door road ship king bread salt gold wolf bear "
    "river stone apple table chair house garden window flower market winter summer doctor letter paper "
    "music water silver forest island castle mirror candle basket pepper butter lemon onion carrot "
    "tiger horse mouse rabbit eagle queen court judge verse night light heart storm cloud money travel "
    "planet energy engine circuit laser atom copper glass honey olive wheat barley coffee"
)
SPELL_LINE = (
    "[The word {w} is spelled {l}.|{W} is spelled {l}.|How do you spell {w}? {W} is spelled {l}.|"
    "{W} begins with the letter {f} and is spelled {l}.]"
)
