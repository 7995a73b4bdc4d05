"""The stand-ins the application platform tests share: a clock whose waits take no real time,
and a compose runner that records argv and answers `ps` from canned output."""


class FakeClock:
    """monotonic() and sleep() for the drivers: waits take no real time."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class ComposeRunner:
    """Records argv; answers `ps` from a queue of outputs (the last one repeats)."""

    def __init__(self, ps_outputs, fail=None):
        self.calls = []
        self.ps_outputs = list(ps_outputs)
        self.fail = fail or {}

    def __call__(self, argv, cwd):
        self.calls.append(list(argv))
        verb = argv[argv.index("-p") + 2]
        if verb in self.fail:
            return self.fail[verb]
        if verb == "ps":
            out = self.ps_outputs.pop(0) if len(self.ps_outputs) > 1 else self.ps_outputs[0]
            return 0, out, ""
        return 0, "", ""
