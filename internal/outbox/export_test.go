package outbox

// LockKey is the advisory lock the relay holding the cursor owns, for tests
// that find and kill it.
const LockKey = lockKey
