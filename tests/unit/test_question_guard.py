"""The question guard: which two questions may share a cached answer, word by word."""

from __future__ import annotations

import pytest

from rag_query.question_guard import same_question

SAME = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("How do I rename files?", "How do I rename a file?"),  # plurals
    ("How do I delete a folder?", "How do I remove a directory?"),  # synonyms
    ("How do I turn on dark mode?", "How do I enable dark mode?"),  # a phrasal verb
    ("What is the way to convert a string to a number?", "How do I convert a string to a number?"),
    ("How do I install Node.js?", "How can I install Node.js?"),
    ("Does C++ support lambdas?", "Does C++ support lambdas?"),
    ("What is new in .NET 8?", "What's new in .NET 8?"),
]

DIFFERENT = [
    # Names with symbols are words of their own.
    ("Can I create my own functions in C?", "Can I create my own functions in C++?"),
    ("Can I create my own functions in C#?", "Can I create my own functions in C++?"),
    ("Is .NET free to use?", "Is NET free to use?"),
    ("How do I debug Node.js?", "How do I debug Node?"),
    ("Which Python 3.11 features matter?", "Which Python 3.12 features matter?"),
    # Acronyms, numbers and negations.
    ("Does the API use HTTP?", "Does the API use HTTPS?"),
    ("Can I take 5 days off?", "Can I take 10 days off?"),
    ("Can I work from home?", "Can I not work from home?"),
    # Directions and roles.
    ("How do I convert a string to a number?", "How do I convert a number to a string?"),
    ("Can I ship to Canada?", "Can I ship from Canada?"),
    ("Does Bob manage Carol?", "Does Carol manage Bob?"),
    # A word only one of them has narrows the question.
    ("How do I reset my password?", "How do I reset my admin password?"),
]


@pytest.mark.parametrize(("cached", "asked"), SAME)
def test_paraphrases_are_the_same_question(cached, asked):
    assert same_question(cached, asked)
    assert same_question(asked, cached)


@pytest.mark.parametrize(("cached", "asked"), DIFFERENT)
def test_questions_that_differ_in_one_word_that_matters_are_not(cached, asked):
    assert not same_question(cached, asked)
    assert not same_question(asked, cached)


def test_a_full_stop_ends_a_sentence_and_is_no_part_of_a_word():
    assert same_question("Is the office open on Sunday.", "Is the office open on Sunday?")
    assert same_question("snake_case names, please", "snake_case names please")
