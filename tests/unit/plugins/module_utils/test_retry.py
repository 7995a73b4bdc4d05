"""retry: the one backoff schedule the collection's own retry loops wait by."""

from ansible_collections.auditron.dr.plugins.module_utils import retry


def test_the_default_schedule_doubles_from_a_quarter_second_up_to_eight():
    assert [retry.backoff_delay(n, jitter=False) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_jitter_waits_half_to_all_of_the_step():
    for attempt in (1, 3, 9):
        step = retry.backoff_delay(attempt, jitter=False)
        waits = [retry.backoff_delay(attempt) for sample in range(200)]
        assert all(step * 0.5 <= wait <= step for wait in waits)
        assert len(set(waits)) > 1


def test_no_cap_and_no_jitter_is_plain_doubling():
    assert [retry.backoff_delay(n, base=1.5, cap=None, jitter=False) for n in (1, 2, 3, 10)] == [1.5, 3.0, 6.0, 768.0]
    assert retry.backoff_delay(1, base=0, jitter=False) == 0.0
    assert retry.backoff_delay(0, base=2, jitter=False) == 2.0   # attempt numbers start at 1


def test_backoff_sleeps_the_delay():
    slept = []
    retry.backoff(3, base=0.5, jitter=False, sleep=slept.append)
    assert slept == [2.0]
