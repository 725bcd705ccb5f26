"""How long `rag up` waits before starting a crashed service again."""

from rag_cli.supervise import RestartPolicy


def test_the_delay_doubles_with_each_crash_in_a_row_up_to_its_cap():
    policy = RestartPolicy(first_delay_s=1.0, max_delay_s=30.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
