// The tests use the simulation driver's vsock socket model itself (src/driver/sim/vmm-socket.ts).
export { VmmSocket as FakeVmmSocket, type VmmSocketOptions as FakeVmmOptions } from '../../src/driver/sim/vmm-socket.ts';
