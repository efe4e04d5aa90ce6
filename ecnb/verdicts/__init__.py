"""The verdicts, in one place: how deep a method's forgetting goes, what gives it away, what it cost, and
whether the cell can tell at all; then the study's claims over cells.

Every verdict reads a method against a population of models retrained without D_f (`retrain` and
`retrain#1` ...), on the same forget set, with every figure's noise (docs/study.md, "Verdicts"):

- `measured` (`evidence`): the figures of `results.csv` and the figures against the population, each with its 95 %
  interval (test images, attacker's draws and population resampled jointly) and its floor (the population's
  own spread, read by leaving one retrained model out at a time): `population`;
- `rules`: depth (not forgotten, superficial, partial, erased, undecided), tells and cost from those
  figures, and the null test: each retrained model read against the others must come out erased, keeps
  retain, no tell;
- `cells` (`claims`): the study's claims over the cells of one data set;
- `tables` (`summary`): the printed summary table, its key and the run's reading in words.

A method **succeeds** when it is erased, keeps retain and shows no tell, each decided. Mean intermediate CKA
to the original stands beside the verdicts as supporting evidence, never as one.
"""
from .cells import Cells, attack_distance, attack_distances, claims, nearer, variant_claims
from .measured import (CKA, ENTROPY, FEWSHOT, FORGET, FULL_PROBE, MIA, N_TEST_FORGET, OUTPUT_KS, POPULATION_SIZE, RELEARN,
                       RESOLUTION, RETAIN, TEST_FORGET, WEIGHTS, evidence, point_figures, read_evidence, relearn_columns,
                       taps_of)
from .population import (FEWSHOT_CENTRE, FEWSHOT_GAP, OUTPUT_DISTANCE, RELEARN_CENTRE, RELEARN_GAP, RELEARN_GAP_STEP,
                         RESISTANCE, RETAIN_DROP, figures, floor, high, low)
from .rules import (COST, COST_UNDECIDED, DEPTH, DEPTHS, ERASED, ERASED_TOL, FORGET_TOL, HURTS_RETAIN, NOT_FORGOTTEN,
                    KEEPS_RETAIN, NULL_PASS, OUTPUT_TELL, OUTPUT_TELL_NAME, PARTIAL, REFERENCE, RESISTANCE_TELL,
                    RESISTANCE_TELL_NAME, RETAIN_TOL, SUCCEEDS, SUPERFICIAL, SUPERFICIAL_GAP, TELLS, UNDECIDED, VERDICT,
                    cost_undecided, disagreements, gap_level, judge, keeps_retain, null_test, verdict_line)
from .tables import (Prose, describe, figure_text, judge_run, summary, summary_key, verdict_summary, verdicts_by_seed,
                      wilson_interval, with_interval)

