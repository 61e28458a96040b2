package shard

// FNV-1a, 32 bits (the same as hash/fnv.New32a), inlined to avoid an
// allocation per call.
const (
	fnvOffset32 = 2166136261
	fnvPrime32  = 16777619
)

// ForMerchant maps a merchant id to its shard: the 32-bit FNV-1a hash of
// the id's bytes, modulo shards. Clients re-implement this function to send
// each call to the right shard, so it never changes; for example
// ForMerchant("m1", 16) == 11 and ForMerchant("shop-42", 16) == 14.
//
// The shard count is fixed for the life of a cluster. ForMerchant(id, 0)
// returns 0 (a cluster not yet formed has no shard to offer).
func ForMerchant(merchantID string, shards uint32) uint32 {
	if shards == 0 {
		return 0
	}
	h := uint32(fnvOffset32)
	for i := 0; i < len(merchantID); i++ {
		h ^= uint32(merchantID[i])
		h *= fnvPrime32
	}
	return h % shards
}
