// `roformer info`: libtorch version, devices, threads and BLAS: a quick health check.

import { Command } from 'commander';

export function infoCommand(): Command {
  return new Command('info')
    .description('show libtorch version, devices, threads and BLAS (a quick health check)')
    .option('--build-config', 'also print libtorch build configuration')
    .action(async (options: { buildConfig?: boolean }) => {
      const { blasInUse, runtimeInfo } = await import('../model/runtime.js');
      const info = runtimeInfo();
      console.log(`libtorch        ${info.libtorchVersion}`);
      console.log(`CUDA            ${info.cudaAvailable ? `${info.cudaDeviceCount} device(s)` : 'not available'}`);
      console.log(`fused attention ${info.fusedAttention ? 'yes (scaled_dot_product_attention)' : 'no (plain math)'}`);
      const has = (backend: 'gloo' | 'nccl') => (info.distributedBackends.includes(backend) ? 'yes' : 'no');
      console.log(`data parallel   Gloo ${has('gloo')}, NCCL ${has('nccl')}`);
      console.log(`threads         ${info.numThreads} of ${info.availableCores} available cores`);
      console.log(`BLAS            ${blasInUse(info.buildConfig)}`);
      if (options.buildConfig) console.log(`\n${info.buildConfig}\n${info.parallelInfo}`);
    });
}
