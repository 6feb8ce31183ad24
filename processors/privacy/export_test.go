package privacy

// MemoSlots returns the number of per-event memo slots of p's plans.
func MemoSlots(p *Processor) int { return p.memoSlots }

// Plain turns the per-event memo and the pseudonym caches off for the
// workers created after it: every field is computed for every purpose
// (the reference they must equal).
func Plain(p *Processor) {
	for i := range p.plans {
		for fi := range p.plans[i].memo {
			p.plans[i].memo[fi] = -1
			p.plans[i].cached[fi] = false
		}
	}
}
