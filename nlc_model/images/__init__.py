"""The image path of nlc_model: stored JPEGs -> backbone f -> features, and f trained on them.

Modules, in the order an image goes through them:

- `crops`: JPEG decoding and crops, stored image + box -> (3, S, S) pixels, on the CPU or the GPU.
- `shards`: the download's Parquet shards -> streams of cropped images on the device.
- `batches`: training batches of images, T and V_train mixed 9:1, labels on the device.
- `backbone`: f, a torchvision network chosen by name, or a tiny CNN for CPUs.
- `train_backbone`: `train --stage backbone`, f and h (and g with --finetune-backbone) on images,
  through the same training loop as `nlc_model.train` (`nlc_model.loop`).
- `launch`: N training processes on one machine under torchrun.
- `embed`: f(I) of every image of the shards, written as the features table `train` reads.

nlc_model's core never imports this package.
"""
