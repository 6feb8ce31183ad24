// Package dp provides the discrete differential-privacy building blocks of
// the k-anonymous aggregates: the two-sided geometric mechanism (discrete
// Laplace), the noisy threshold for DP-safe row selection and a per-window
// budget accountant.
//
// Allowed imports: the standard library only (no Kafka, no Redis, no other
// package of this module).
//
// # Mechanism
//
// [Geometric] adds integer noise Z with P(Z = z) ∝ alpha^|z|, where
// alpha = exp(-epsilon/sensitivity). This is the discrete analogue of the
// Laplace mechanism and is epsilon-DP for an integer query whose L1
// sensitivity is at most sensitivity. Z is sampled exactly as the
// difference of two independent geometric variables on {0, 1, ...} with
// P(G = k) = (1-alpha) alpha^k, each obtained by inverse CDF from a
// uniform variate U in (0, 1]: G = floor(ln U / ln alpha) (P(G >= k) =
// P(U <= alpha^k) = alpha^k). The variance of Z is 2 alpha / (1-alpha)^2.
// The only departure from the ideal distribution is float64 rounding of
// the logarithm and the 53-bit resolution of U, which cuts the tail at
// probability 2^-53.
//
// The default randomness is [CryptoSource] (crypto/rand): a predictable
// source voids the privacy guarantee. [NewSeededSource] is deterministic
// and meant for tests only.
//
// # Selection threshold
//
// A released row must not reveal that a cell exists when a single subject
// made it. [SelectionThreshold] returns the smallest integer T such that a
// cell whose true distinct-subject count is 1, noised with the geometric
// mechanism (epsilon, sensitivity L0), reaches T with probability at most
// delta/L0; a subject touches at most L0 cells, so by the union bound
// every row made by that subject alone stays hidden except with
// probability delta. With alpha = exp(-epsilon/L0) and P(Z >= m) =
// alpha^m/(1+alpha) for m >= 0:
//
//	T = 1 + max(0, ceil( ln(L0 / (delta (1+alpha))) / (epsilon/L0) ))
//
// # Budget
//
// [Accountant] tracks epsilon and delta per window under basic sequential
// composition: every noisy query that touches a subject in one window
// (every measure at every roll-up level) is charged to that window, and
// the charges of one window must not exceed its budget. Windows are
// disjoint in time, so one window's release is parallel to another's for
// a subject absent from it, but a subject present in W windows spends
// W * epsilon (and W * delta) in total over the stream; [Spent] reports
// that worst case.
package dp
