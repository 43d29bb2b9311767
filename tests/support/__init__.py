"""What many test modules need: waiting on a condition, free ports and child processes
(``processes``), and the personas (``personas``). Django-free except ``personas``."""
