// Package aggregate computes k-anonymous aggregates over tumbling
// event-time windows for one input shard (one Kafka partition, on which all
// events of a subject arrive), or merged over every shard ([Merger]), with optional roll-up of suppressed cells
// and optional discrete differential privacy (package
// internal/kanon/dp).
//
// Allowed imports: the standard library and internal/kanon/dp only (no
// Kafka, no Redis, no I/O).
//
// # Windows
//
// Window [start, start+Window) closes when the shard's watermark (the
// maximum event time seen, or a later time passed to [Aggregator.Advance])
// reaches end + AllowedLateness. An event whose window is already closed
// by that rule is late: it is counted ([Late] and [Stats].EventsLate) and
// never added. When a window closes its rows are computed and handed to
// the [EmitFunc] as one [ClosedWindow]. [Aggregator.Flush] closes all
// open windows at the end of a bounded input.
//
// # Cells, K and roll-up
//
// Events are grouped by their dimension values at level 0 (the finest).
// A cell is released only if it covers at least K distinct subjects (not
// events). With Rollup, the contributions of suppressed cells are
// regrouped at the next coarser lattice level and released there if they
// reach K, and so on up to the top level where every dimension is "*".
// The lattice walk is the diagonal chain: level j generalises dimension i
// to min(j, Levels_i - 1), so there are 1 + max_i(Levels_i - 1) levels. A
// chain (rather than the full lattice) keeps every contribution in at most
// one released row, which keeps the measures additive (margins are plain
// sums) and makes the number of DP queries per subject the chain length.
// Contributions still below K at the top level are suppressed for good.
// A contribution released at level j is not part of any row at a coarser
// level: a coarser row counts only what was suppressed below it.
//
// # Margins
//
// Each window also gets margin rows ([Row].Margin): a grand total and, for
// every dimension, one row per value as it appears in released rows (at
// the level it has there). Margins are computed ONLY from released rows,
// never from the raw totals: a margin built from raw totals would let a
// reader subtract the released rows from it and recover a suppressed
// cell. As unions of released rows every margin covers at least K
// distinct subjects. A margin's Subjects is the sum of its rows' Subjects
// (exact or noisy; under DP that is post-processing, no extra budget): an
// upper bound of its people, since a subject present in several rows
// counts several times. It is deliberately not the exact union: the union
// minus one of its rows is the number of people in the other rows but not
// in that one, a group that may be smaller than K, while the sum adds
// nothing to what the rows tell. Events and Sums are additive anyway. The
// tests' differencing checker subtracts every one and two figures nested
// in another (rows, roll-ups, margins) and finds no group 0 < n < K.
//
// # Differential privacy
//
// With [Config].DP set, each window's release is (epsilon, delta)-DP per
// subject with respect to adding or removing one subject, apart from the
// hard K floor discussed below:
//
//   - Contribution bounding, per subject per window, in arrival order
//     (deterministic, so a replay rebuilds the same state): a subject's
//     events count only in the first L0 = MaxCellsPerSubject level-0
//     cells it touches, and at most Linf = MaxEventsPerCell events per
//     cell; amounts are clamped to [-MaxAmount, MaxAmount] and rounded to
//     multiples of AmountUnit. Dropped events are counted
//     ([Stats].EventsBounded).
//   - Sensitivities at every roll-up level (a subject's bounded
//     contributions reach at most L0 groups of a level): distinct subjects
//     L0, events L0*Linf, amount sum L0*Linf*ceil(MaxAmount/AmountUnit)
//     units.
//   - Budget split (basic sequential composition): the window's Epsilon is
//     divided evenly among the M measures (3, or 2 when MaxAmount is 0 and
//     no sum is released) at each of the L levels (L = 1 without roll-up):
//     epsilon_q = Epsilon/(M*L). Delta is spent by selection only, Delta/L
//     per level. A subject present in W windows spends W*Epsilon and
//     W*Delta over the stream ([Stats].EpsilonSpent reports the sum over
//     closed windows).
//   - Two-sided geometric noise ([dp.Geometric]) is added to events,
//     subjects and the sum of every candidate row, drawn when the window
//     closes. A row is released iff its TRUE distinct-subject count is at
//     least K (the hard rule of the product contract) AND its noisy
//     subject count reaches [dp.SelectionThreshold](epsilon_q, Delta/L,
//     L0).
//   - Honest caveat: the hard K floor makes selection depend on the exact
//     count near K, which is not differentially private: a cell with
//     exactly K subjects is released (if the noise allows) and the same
//     cell without one of them never is, whatever the noise. The DP
//     guarantee therefore holds for cells away from the floor; near it
//     the protection is k-anonymity plus noisy counts. The same applies to
//     roll-up, whose inputs depend on which lower-level cells passed the
//     floor.
//   - Margins are sums of released noisy rows (post-processing).
//   - [Stats] are exact operator metrics (e.g. MinReleasedSubjects) and
//     are not differentially private; they must not be published.
//
// # Exactly-once restore
//
// [Aggregator.Checkpoint] returns a small [State] (watermark, open windows
// with the Ref of their first accepted event, cumulative stats), encoded
// by [MarshalState] and decoded by [UnmarshalState]. To restore, build a
// new Aggregator from the same config, call [Aggregator.Restore], then
// [Aggregator.Replay] every input event with Ref in [ReplayFrom, the
// checkpoint position): Replay re-adds only events of the snapshot's open
// windows, never emits and never counts lateness. Afterwards the restored
// instance behaves exactly like the original.
//
// # Two stages: partials and the merge
//
// With [Config].Partials an Aggregator releases nothing: a closing window
// is handed to the EmitFunc as its level-0 contributions
// ([ClosedWindow].Cells: per cell events, sums and the sorted distinct
// subject ids, after contribution bounding), and [Aggregator.ClosedBefore]
// reports how far the shard has closed its windows (also those it never
// had an event in). A [Merger] is told the shard count by its caller
// ([Merger.SetShards]: the input's real partition count, never one the
// input claims), adds the partials of every shard ([Merger.Add], after
// [Merger.Check]; at most [MaxPending] pending windows, beyond which a
// partial is refused), learns each shard's progress ([Merger.Progress]),
// and closes a window once every shard has passed it, with the same close as above (the code is shared: both embed one
// closer) over the union of the contributions: events and sums add (sums
// in shard order, so arrival order never changes a figure), subjects
// unite, distinct subjects are counted in the largest identity domain.
// The release equals one aggregator's over all events
// (TestMergeEqualsOneShardOverEverything). DP noise, the budget and the
// period ledger are the Merger's, charged once per merged window. A
// Merger checkpoints like an Aggregator ([MergeState], replay from the
// first partial of its pending windows); a state of another configuration
// still gives its release horizon and DP ledger ([Merger.RestoreHorizon]),
// so no window before the horizon is ever released twice. A window whose
// DP bounds cannot be scaled to its identity domains is refused (counted
// in WindowsRefused), never an error that would stop the close.
//
// An Aggregator is not safe for concurrent use: use one per partition.
package aggregate
