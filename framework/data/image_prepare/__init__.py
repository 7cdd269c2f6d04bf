"""Image data sets prepared from local files as tfds data sets in ArrayRecord format.

Every data set lands at `DATA_DIR/<name>/<version>/` as an ordinary tfds data set
(`file_format="array_record"`) with the features `image` (`tfds.features.Image`, encoded
PNG/JPEG bytes), `label` (`tfds.features.ClassLabel`) and, where the source has names,
`file_name` (`tfds.features.Text`). It reads back with
`tfds.data_source(name, split=..., data_dir=DATA_DIR, download=False)` and
`tfds.builder(name, data_dir=DATA_DIR).info`. `DATA_DIR` defaults to tfds' own default
(`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). Nothing here downloads from the web;
only `fashion_mnist` may call `apt-get download` (a package registry).

One module per source:
- `fashion_mnist.prepare_fashion_mnist`: Fashion-MNIST from its IDX files (the Debian
  package `dataset-fashion-mnist` ships the ones tfds downloads), written by a subclass
  of tfds' own `fashion_mnist` builder, so `tfds.builder("fashion_mnist")` reads it like
  the official one (version 3.0.1, same features, description and supervised keys).
- `image_folder.prepare_image_folder`: a directory of class sub-folders
  (`DIR/<class>/*.jpg`), or of split folders holding class sub-folders
  (`DIR/{train,validation,test}/<class>/...`). Every image is decoded once with PIL
  before anything is written; JPEG and PNG files are stored byte for byte, other formats
  (and CMYK JPEGs, which TensorFlow decodes with wrong colours) are re-encoded
  losslessly as PNG.
- `imagenet.prepare_imagenet2012`: tfds' own `imagenet2012` builder on a `manual_dir`
  holding `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` (validation labels
  ship inside tfds).
- `synthetic.prepare_synthetic_images`: generated JPEGs of ImageNet's size (an
  input-pipeline benchmark stand-in), prepared as an image folder.

`common` holds what they share (`Prepared`, the data dir, the "already prepared"
check). A data set that is already prepared is left as it is. `advice.prepare_command`
and `advice.expected_files` tell a reader that finds no data what to run.
"""
