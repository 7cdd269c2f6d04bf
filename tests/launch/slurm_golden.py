"""The signal-handling part of the sbatch scripts, for golden tests of whole scripts
(`framework.launchers.slurm`; written out in full in test_launchers.py's first one)."""

from __future__ import annotations


def signal_block(grace: int = 120) -> str:
    """From the job-start line to the TERM trap; `grace` 0: no USR1 trap."""
    usr1 = f"# SLURM sends USR1 {grace} s before the time limit (see --signal).\n" if grace else ""
    trap = (
        f'trap \'limit=1; echo "== time limit in about {grace} s: SIGTERM to the run"; '
        "stop_run' USR1\n"
        if grace
        else ""
    )
    return (
        'echo "== job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname), $(date)"\n'
        + usr1
        + "# scancel and preemption send TERM. The run gets SIGTERM (through scancel, to its\n"
        "# tasks: srun would kill them on a SIGTERM), saves a checkpoint and exits while this\n"
        "# shell waits for it.\n"
        "limit=0 stopping=0\n"
        "stop_run() {  # once: an old Slurm's scancel may signal this shell too\n"
        '  if [ "$stopping" = 1 ]; then return; fi\n'
        "  stopping=1\n"
        '  scancel --signal=TERM "$SLURM_JOB_ID" || true\n'
        "}\n" + trap + "trap 'echo \"== SIGTERM: passed on to the run\"; stop_run' TERM\n"
    )


def wait_block(requeue: bool = True) -> str:
    """From `run=$!` to the end; `requeue` False: no requeue after a time-limit stop."""
    requeue_lines = (
        "# Stopped with a checkpoint for the time limit, not finished: requeue and resume.\n"
        'if [ "$limit" = 1 ] && [ "$status" = 0 ] && '
        '! grep -qs \'"status": "done"\' "$workdir/run.json"; then\n'
        '  echo "== requeueing job $SLURM_JOB_ID: the run resumes from its checkpoint"\n'
        '  scontrol requeue "$SLURM_JOB_ID"\n'
        "fi\n"
    )
    return (
        "run=$!\n"
        "while :; do\n"
        '  status=0; wait "$run" || status=$?\n'
        '  kill -0 "$run" 2>/dev/null || break\n'
        "done\n" + (requeue_lines if requeue else "") + 'exit "$status"\n'
    )
